"""Provisioning's API layer: the gRPC servicer (`servicer`, in parts by aggregate), the
translation of records and requests (`convert`, `checks`) and resource names (`names`)."""

from .servicer import ProvisioningServicer

__all__ = ["ProvisioningServicer"]
