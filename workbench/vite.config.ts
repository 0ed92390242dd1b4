import { defineConfig } from "vite";

// Served by the service at /workbench/ (static files next to the API, same origin).
export default defineConfig({
  base: "/workbench/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 400 },
});
