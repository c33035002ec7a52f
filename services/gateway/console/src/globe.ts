// The 3-D globe: a CesiumWidget with Cesium's bundled NaturalEarthII imagery (a tile map
// service under CESIUM_BASE_URL, copied into dist/ at build), the ellipsoid as terrain, and
// no Cesium ion, geocoder, base-layer picker or anything else that would reach the network.
import {
  buildModuleUrl,
  Cartesian3,
  CesiumWidget,
  EllipsoidTerrainProvider,
  ImageryLayer,
  Ion,
  TileMapServiceImageryProvider,
} from "cesium";
import "cesium/Build/Cesium/Widgets/widgets.css";

import { showError } from "./errors";
import { mark, state } from "./state";

export interface Globe {
  widget: CesiumWidget;
}

/** Creates the globe in `container`; frames are rendered continuously at 30 Hz at most. */
export function createGlobe(container: HTMLElement): Globe {
  // No ion: an empty token makes any accidental ion request fail instead of using a default.
  Ion.defaultAccessToken = "";
  const imagery = TileMapServiceImageryProvider.fromUrl(
    buildModuleUrl("Assets/Textures/NaturalEarthII"));
  const widget = new CesiumWidget(container, {
    baseLayer: ImageryLayer.fromProviderAsync(imagery, {}),
    terrainProvider: new EllipsoidTerrainProvider(),
    targetFrameRate: 30,
    msaaSamples: 1,
    showRenderLoopErrors: false,
    contextOptions: { webgl: { alpha: false, antialias: false, powerPreference: "high-performance" } },
  });
  widget.scene.renderError.addEventListener((_scene: unknown, error: unknown) => {
    showError("the globe stopped rendering", error);
  });
  widget.scene.globe.enableLighting = false;
  widget.scene.globe.baseColor = widget.scene.globe.baseColor.clone();
  widget.clock.shouldAnimate = true;
  widget.clock.multiplier = 1;
  widget.camera.setView({ destination: Cartesian3.fromDegrees(10, 30, 20_000_000) });
  const markReady = widget.scene.postRender.addEventListener(() => {
    state.globeReady = true;
    mark("firstFrame");
    markReady();
  });
  widget.scene.globe.tileLoadProgressEvent.addEventListener((queued: number) => {
    state.tilesLoaded = queued === 0 && widget.scene.globe.tilesLoaded;
    if (state.tilesLoaded) mark("tilesLoaded");
  });
  return { widget };
}
