package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/openslicer/openslicer/api"
)

// A create is answered when its client has the whole 201 body: the JSON
// object is complete only with its closing brace. answerCreate sends every
// byte of the answer but the last two ("}\n") and flushes them, then calls
// commit, which records the VM as answered (a synced store write), then
// sends the last two bytes. So:
//
//   - a client that has its answer knows of a VM that is recorded answered,
//     and so kept across a daemon crash (ephemeral VMs never are);
//   - a VM recorded unanswered when the daemon dies is reclaimed by the next
//     daemon, like one caught mid-create; its client got no answer, or an
//     answer cut short, which every JSON decoder reports as an error;
//   - a client that is gone before commit (its request cancelled, or a
//     failed write or flush) gets no VM: the create unwinds.
//
// What remains is the time between commit returning and the last write:
// a crash exactly there keeps a VM whose client saw a truncated answer. It
// is the length of one write system call, against the length of a synced
// store write had the record been marked answered before (or after) the
// whole answer went out.
func answerCreate(ctx context.Context, w http.ResponseWriter, log *slog.Logger, resp api.CreateNodeResponse, commit func() error) error {
	return answerJSON(ctx, w, log, http.StatusCreated, resp.Hostname, resp, commit)
}

// answerJSON answers as answerCreate does, with status and any JSON object
// v made for the VM hostname (a fork's answer is 200).
func answerJSON(ctx context.Context, w http.ResponseWriter, log *slog.Logger, status int, hostname string, v any, commit func() error) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	body = append(body, '\n')
	head, tail := body[:len(body)-2], body[len(body)-2:]
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("write answer: %w", err)
	}
	if err := rc.Flush(); err != nil {
		return fmt.Errorf("write answer: %w", err)
	}
	// The server notices a client that has hung up even when the write to
	// it went into a buffer.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client gone before its answer: %w", err)
	}
	if err := commit(); err != nil {
		return fmt.Errorf("record the create as answered: %w", err)
	}
	// Committed: the VM is the client's now, whatever happens to the
	// connection.
	if _, err := w.Write(tail); err == nil {
		err = rc.Flush()
	}
	if err != nil {
		log.Warn("answer cut short after it was recorded", "vm", hostname, "err", err)
	}
	return nil
}
