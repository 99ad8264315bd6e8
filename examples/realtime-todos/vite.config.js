import { defineConfig } from 'vite';

// The Hearth server answers CORS preflights (cors_origins defaults to "*"), so the page can call
// it directly (`?server=` or VITE_HEARTH_URL). To keep the page same-origin instead, set
// HEARTH_PROXY=http://127.0.0.1:8080: `vite` and `vite preview` then forward /v1 (REST and the
// realtime WebSocket) to that server, and the app uses its own origin.
const target = process.env.HEARTH_PROXY;
const proxy = target ? { '/v1': { target, changeOrigin: true, ws: true } } : undefined;

export default defineConfig({
  define: target ? { 'import.meta.env.VITE_HEARTH_PROXY': JSON.stringify('1') } : {},
  server: { proxy },
  preview: { proxy },
});
