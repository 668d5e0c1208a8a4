// Package dashboard is Ember's web dashboard, served by emberd at /ui with
// every asset embedded in the binary (no CDN, nothing fetched from the
// internet). The page holds no data of its own: it asks for an API key,
// keeps it in the tab's sessionStorage, and reads the same API as the CLI
// with it (/v1/status, /v1/bindings/{id}/lag, /v1/bindings/{id}/dlq,
// POST /v1/bindings/{id}/redrive), polling every two seconds. A tenant's
// key shows that tenant's bindings only; the administrator's shows all.
package dashboard
