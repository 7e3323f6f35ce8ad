/**
 * Where the APIs are. Build-time configuration (Vite inlines `import.meta.env.VITE_*`), so one
 * source builds for `make run` (defaults), the E2E stack (its free ports) and a deployment.
 */
export const API_URL: string = (import.meta.env.VITE_API_URL as string | undefined) ?? "http://localhost:3000";
export const WS_URL: string = (import.meta.env.VITE_WS_URL as string | undefined) ?? "ws://localhost:3001";
