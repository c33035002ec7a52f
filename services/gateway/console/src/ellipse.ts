// A predicted impact's 95 % error ellipse as a ring of points on the WGS84 ellipsoid.
//
// The ellipse is given by its centre (geodetic degrees), its semi-axes in metres and the
// azimuth of the major axis in degrees clockwise from north (threat.proto's
// GroundPrediction). In the local east-north plane at the centre the major axis points
// along (sin az, cos az) and the minor along (cos az, -sin az); a point of the ring at
// parameter theta is a cos(theta) * major + b sin(theta) * minor. Offsets are laid in the
// tangent plane and then dropped onto the ellipsoid (Cesium draws the polygon at height 0);
// for a 100 km axis the plane departs from the surface by 100^2 / (2 * 6371) = 0.8 km.
import { Cartesian3, Cartographic, Matrix4, Transforms } from "cesium";

export interface EllipseSpec {
  latitudeDeg: number;
  longitudeDeg: number;
  semiMajorM: number;
  semiMinorM: number;
  majorAzimuthDeg: number;
}

/** `count` points of the ring (ECEF metres, on the ellipsoid), counter-clockwise. */
export function ellipseRing(spec: EllipseSpec, count = 64): Cartesian3[] {
  const centre = Cartesian3.fromDegrees(spec.longitudeDeg, spec.latitudeDeg, 0);
  const enu = Transforms.eastNorthUpToFixedFrame(centre);
  const az = (spec.majorAzimuthDeg * Math.PI) / 180;
  const a = Math.max(spec.semiMajorM, 1);
  const b = Math.max(spec.semiMinorM, 1);
  const out: Cartesian3[] = [];
  const local = new Cartesian3();
  for (let k = 0; k < count; k++) {
    const theta = (2 * Math.PI * k) / count;
    const east = a * Math.cos(theta) * Math.sin(az) + b * Math.sin(theta) * Math.cos(az);
    const north = a * Math.cos(theta) * Math.cos(az) - b * Math.sin(theta) * Math.sin(az);
    Cartesian3.fromElements(east, north, 0, local);
    const fixed = Matrix4.multiplyByPoint(enu, local, new Cartesian3());
    const onGround = Cartographic.fromCartesian(fixed);
    out.push(onGround ? Cartesian3.fromRadians(onGround.longitude, onGround.latitude, 0) : fixed);
  }
  return out;
}

/**
 * The 1-sigma position uncertainty (metres) of a 6x6 row-major state covariance
 * (ECEF, m^2): the square root of the position block's largest diagonal term.
 */
export function positionSigmaM(covariance: number[]): number {
  if (covariance.length < 36) return NaN;
  return Math.sqrt(Math.max(covariance[0]!, covariance[7]!, covariance[14]!));
}
