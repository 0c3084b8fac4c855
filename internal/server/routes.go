package server

import "net/http"

// routes is the whole API surface, one line per endpoint. Paths follow
// Slicer's REST API (spec §2); everything is served at "/".
func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz) // no auth; GET also answers HEAD
	mux.HandleFunc("GET /info", s.getInfo)
	mux.HandleFunc("POST /daemon/shutdown", s.daemonShutdown)
	mux.Handle("GET /metrics", s.metrics.handler())

	mux.HandleFunc("GET /hostgroup", s.listHostGroups)
	mux.HandleFunc("GET /hostgroup/{group}/nodes", s.listGroupNodes)
	mux.HandleFunc("POST /hostgroup/{group}/nodes", s.createNode)
	mux.HandleFunc("DELETE /hostgroup/{group}/nodes/{hostname}", s.deleteNode)
	mux.HandleFunc("GET /nodes", s.listNodes)
	mux.HandleFunc("GET /nodes/stats", s.stats)
	mux.HandleFunc("GET /node/{hostname}/stats", s.stats) // an array too, as Slicer's Go SDK decodes it

	mux.HandleFunc("GET /vm/{hostname}", s.describe)
	mux.HandleFunc("GET /vm/{hostname}/tags", s.getTags)
	mux.HandleFunc("PATCH /vm/{hostname}/tags", s.patchTags)
	mux.HandleFunc("POST /vm/{hostname}/pause", s.pause)
	mux.HandleFunc("POST /vm/{hostname}/resume", s.resume)
	mux.HandleFunc("POST /vm/{hostname}/shutdown", s.shutdownVM)
	mux.HandleFunc("POST /vm/{hostname}/relaunch", s.relaunch)
	mux.HandleFunc("POST /vm/{hostname}/suspend", s.suspend)
	mux.HandleFunc("POST /vm/{hostname}/restore", s.restore)

	mux.HandleFunc("POST /vm/{hostname}/exec", s.exec)
	mux.HandleFunc("GET /vm/{hostname}/health", s.health) // HEAD: readiness, no body
	mux.HandleFunc("GET /vm/{hostname}/logs", s.logs)

	mux.HandleFunc("GET /secrets", s.withSecrets(s.listSecrets))
	mux.HandleFunc("POST /secrets", s.withSecrets(s.createSecret))
	mux.HandleFunc("PATCH /secrets/{name}", s.withSecrets(s.updateSecret))
	mux.HandleFunc("DELETE /secrets/{name}", s.withSecrets(s.deleteSecret))

	mux.HandleFunc("/", s.notFound)
}
