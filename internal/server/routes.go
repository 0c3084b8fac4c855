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

	// Guest operations the agent answers; the daemon passes them through
	// (guestops.go), except shell and forward, which it bridges from a
	// WebSocket (shell.go).
	mux.HandleFunc("GET /vm/{hostname}/exec", s.guest("/v1/exec"))
	mux.HandleFunc("GET /vm/{hostname}/exec/{id}", s.guest("/v1/exec/{id}"))
	mux.HandleFunc("DELETE /vm/{hostname}/exec/{id}", s.guest("/v1/exec/{id}"))
	mux.HandleFunc("POST /vm/{hostname}/exec/{id}/kill", s.guest("/v1/exec/{id}/kill"))
	mux.HandleFunc("GET /vm/{hostname}/exec/{id}/wait-exit", s.guest("/v1/exec/{id}/wait-exit"))
	mux.HandleFunc("GET /vm/{hostname}/exec/{id}/logs", s.guest("/v1/exec/{id}/logs"))
	mux.HandleFunc("GET /vm/{hostname}/cp", s.guest("/v1/cp"))
	mux.HandleFunc("POST /vm/{hostname}/cp", s.guest("/v1/cp"))
	mux.HandleFunc("GET /vm/{hostname}/fs/readdir", s.guest("/v1/fs/readdir"))
	mux.HandleFunc("GET /vm/{hostname}/fs/stat", s.guest("/v1/fs/stat"))
	mux.HandleFunc("POST /vm/{hostname}/fs/mkdir", s.guest("/v1/fs/mkdir"))
	mux.HandleFunc("DELETE /vm/{hostname}/fs/remove", s.guest("/v1/fs/remove"))
	mux.HandleFunc("GET /vm/{hostname}/fs/watch", s.guest("/v1/fs/watch"))
	mux.HandleFunc("GET /vm/{hostname}/shell", s.shell)
	// Slicer's openapi leaves forward's method open (inlets legacy), but a
	// WebSocket handshake is a GET (RFC 6455; the WebSocket library answers
	// 405 to any other), and an any-method pattern would clash with
	// DELETE /vm/commits/{id} on "DELETE /vm/commits/forward".
	mux.HandleFunc("GET /vm/{hostname}/forward", s.forward)

	mux.HandleFunc("GET /secrets", s.withSecrets(s.listSecrets))
	mux.HandleFunc("POST /secrets", s.withSecrets(s.createSecret))
	mux.HandleFunc("PATCH /secrets/{name}", s.withSecrets(s.updateSecret))
	mux.HandleFunc("DELETE /secrets/{name}", s.withSecrets(s.deleteSecret))

	// Cold-fork commits (spec §3.14, commits.go): the mux prefers the more
	// specific pattern, so /vm/commits… is matched before /vm/{hostname}…,
	// which reserves "commits" (never a hostname anyway: hostnames are
	// <group>-N).
	mux.HandleFunc("POST /vm/{hostname}/commit", s.commitVM)
	mux.HandleFunc("GET /vm/commits", s.listCommits)
	mux.HandleFunc("DELETE /vm/commits/{id}", s.deleteCommit)
	mux.HandleFunc("POST /vm/commits/{id}/fork", s.forkCommit)

	// Documented routes this daemon does not build yet: 501 naming them
	// (noroute.go). The proxy admin API (spec §3.15).
	mux.HandleFunc("POST /proxy/v1/clients", s.notBuilt("the egress proxy"))
	mux.HandleFunc("GET /proxy/v1/clients", s.notBuilt("the egress proxy"))
	mux.HandleFunc("GET /proxy/v1/clients/{name}", s.notBuilt("the egress proxy"))
	mux.HandleFunc("DELETE /proxy/v1/clients/{name}", s.notBuilt("the egress proxy"))
	mux.HandleFunc("POST /proxy/v1/secrets", s.notBuilt("the egress proxy"))
	mux.HandleFunc("GET /proxy/v1/secrets", s.notBuilt("the egress proxy"))
	mux.HandleFunc("DELETE /proxy/v1/secrets/{name}", s.notBuilt("the egress proxy"))
	mux.HandleFunc("POST /proxy/v1/allows", s.notBuilt("the egress proxy"))
	mux.HandleFunc("POST /proxy/v1/allows/revoke", s.notBuilt("the egress proxy"))
	mux.HandleFunc("DELETE /proxy/v1/allows/{client}/{host}", s.notBuilt("the egress proxy"))

	// Anything else: 405 with Allow when the path has routes for other
	// methods, 404 otherwise.
	mux.HandleFunc("/", s.noRoute(mux))
}
