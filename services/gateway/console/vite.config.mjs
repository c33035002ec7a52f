// Vite build of the console. CesiumJS loads its workers, assets (the bundled NaturalEarthII
// imagery, sky box, icons) and third-party WASM at run time from CESIUM_BASE_URL, so those
// static files are copied from node_modules/cesium/Build/Cesium into dist/cesium/ at build
// and served from there by `vite dev`; nothing is fetched from outside.
import { cpSync, createReadStream, existsSync, statSync } from "node:fs";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
const cesiumBuild = resolve(here, "node_modules/cesium/Build/Cesium");
const CESIUM_DIRS = ["Workers", "ThirdParty", "Assets", "Widgets"];
const TYPES = {
  ".js": "text/javascript", ".json": "application/json", ".xml": "application/xml",
  ".png": "image/png", ".jpg": "image/jpeg", ".css": "text/css", ".wasm": "application/wasm",
  ".svg": "image/svg+xml", ".glb": "model/gltf-binary",
};

/** Serves (dev) and copies (build) Cesium's static files under `cesium/`. */
function cesiumStatic() {
  let outDir = "dist";
  return {
    name: "skybridge-cesium-static",
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir);
    },
    configureServer(server) {
      server.middlewares.use("/cesium", (req, res, next) => {
        const path = normalize(decodeURIComponent((req.url || "/").split("?")[0]));
        const file = join(cesiumBuild, path);
        if (!file.startsWith(cesiumBuild) || !existsSync(file) || !statSync(file).isFile()) {
          next();
          return;
        }
        res.setHeader("Content-Type", TYPES[extname(file)] || "application/octet-stream");
        createReadStream(file).pipe(res);
      });
    },
    writeBundle() {
      for (const dir of CESIUM_DIRS) {
        cpSync(join(cesiumBuild, dir), join(outDir, "cesium", dir), { recursive: true });
      }
    },
  };
}

// `vite dev` forwards the Connect calls and the development-token endpoint to a gateway.
const gateway = process.env.SKYBRIDGE_GATEWAY_URL || "http://127.0.0.1:8080";
const proxied = { target: gateway, changeOrigin: false };

export default defineConfig({
  // Relative URLs: the console works wherever the gateway mounts it.
  base: "./",
  define: {
    // Read by Cesium's buildModuleUrl: where Workers/, Assets/... are.
    CESIUM_BASE_URL: JSON.stringify("./cesium/"),
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 8000,
    sourcemap: false,
  },
  server: {
    host: "127.0.0.1",
    proxy: {
      "^/skybridge\\.": proxied,
      "/dev/tokens": proxied,
    },
  },
  preview: { host: "127.0.0.1", proxy: { "^/skybridge\\.": proxied, "/dev/tokens": proxied } },
  plugins: [cesiumStatic()],
});
