package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

// A client has no decodable answer until the create is recorded answered,
// and has all of it after; a failed record leaves it with a cut answer.
func TestAnswerCreateCompletesOnlyAfterCommit(t *testing.T) {
	resp := api.CreateNodeResponse{Hostname: "sbox-1", HostGroup: "sbox", IP: "10.0.0.2/30", CreatedAt: time.Unix(0, 0).UTC()}
	want, _ := json.Marshal(resp)
	for _, commitErr := range []error{nil, errors.New("disk full")} {
		brc := make(chan *bufio.Reader, 1)
		var seenAtCommit []byte
		handled := make(chan struct{})
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(handled)
			err := answerCreate(r.Context(), w, slog.New(slog.DiscardHandler), resp, func() error {
				// What the client holds when the record is written.
				seenAtCommit = readBody(t, <-brc, len(want)-1)
				return commitErr
			})
			if (err != nil) != (commitErr != nil) {
				t.Errorf("answerCreate with commit error %v = %v", commitErr, err)
			}
			if err != nil {
				panic(http.ErrAbortHandler) // as createNode does
			}
		}))
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		brc <- br
		io.WriteString(conn, "POST /hostgroup/sbox/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
		<-handled
		// The rest: two bytes, or none when the answer was cut.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest := make([]byte, 2)
		n, _ := io.ReadFull(br, rest)
		rest = rest[:n]
		conn.Close()
		ts.Close()

		if json.Valid(seenAtCommit) || strings.Contains(string(seenAtCommit), "}") {
			t.Errorf("at commit the client already holds %q, a complete answer", seenAtCommit)
		}
		got := append(seenAtCommit, rest...)
		if commitErr == nil && string(got) != string(want)+"\n" {
			t.Errorf("answer = %q, want %q", got, want)
		}
		if commitErr != nil && json.Valid(got) {
			t.Errorf("after a failed commit the client got a complete answer %q", got)
		}
	}
}

// readBody reads the response headers then n bytes of body from br.
func readBody(t *testing.T, br *bufio.Reader, n int) []byte {
	t.Helper()
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, "201") {
		t.Errorf("status line %q", status)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		t.Errorf("read the first %d bytes of the answer: %v", n, err)
	}
	return buf
}
