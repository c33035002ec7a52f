"""The link broker's scopes."""

READ, WRITE, OPERATOR = "links.read", "links.write", "linkbroker.operator"
