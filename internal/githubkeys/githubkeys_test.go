package githubkeys

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/openslicer/openslicer/api"
)

// testKey returns an authorized_keys line of type typ with a made-up key.
func testKey(typ string, seed byte) string {
	var blob []byte
	for _, part := range [][]byte{[]byte(typ), make([]byte, 32)} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	blob[len(blob)-1] = seed
	return typ + " " + base64.StdEncoding.EncodeToString(blob)
}

func TestKeys(t *testing.T) {
	alice := []string{testKey("ssh-ed25519", 1), testKey("ecdsa-sha2-nistp256", 2)}
	var requests atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		switch r.URL.Path {
		case "/prefix/alice.keys":
			w.Write([]byte(strings.Join(alice, "\n") + "\n\n"))
		case "/prefix/nokeys.keys":
		case "/prefix/portal.keys":
			w.Write([]byte("<html><body>Please log in</body></html>\n"))
		case "/prefix/forged.keys":
			w.Write([]byte("ssh-rsa " + strings.Fields(alice[0])[1] + "\n"))
		case "/prefix/huge.keys":
			w.Write([]byte(strings.Repeat(alice[0]+"\n", maxBody/len(alice[0])+1)))
		case "/prefix/busy.keys":
			http.Error(w, "slow down", http.StatusTooManyRequests)
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	src := &Source{BaseURL: ts.URL + "/prefix/"}
	ctx := context.Background()

	keys, err := src.Keys(ctx, "alice")
	if err != nil || !slices.Equal(keys, alice) {
		t.Fatalf("Keys(alice) = %q, %v; want %q", keys, err, alice)
	}
	for _, tc := range []struct {
		user, contains string
		want           error
	}{
		{"nobody", "does not exist", api.ErrInvalid},
		{"nokeys", "no public SSH keys", api.ErrInvalid},
		{"../etc/passwd", "not a GitHub user name", api.ErrInvalid},
		{"-dash", "not a GitHub user name", api.ErrInvalid},
		{"", "not a GitHub user name", api.ErrInvalid},
		{"portal", "line 1", api.ErrUnavailable},
		{"forged", "does not encode", api.ErrUnavailable},
		{"huge", "more than", api.ErrUnavailable},
		{"busy", "429", api.ErrUnavailable},
	} {
		_, err := src.Keys(ctx, tc.user)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("Keys(%q) = %v; want %v containing %q", tc.user, err, tc.want, tc.contains)
		}
	}
	if n := requests.Load(); n != 7 {
		t.Errorf("%d requests; names that are not GitHub's must not be fetched (want 7)", n)
	}

	ts.Close() // the key server goes away
	if _, err := src.Keys(ctx, "alice"); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("Keys from a server that is gone = %v, want ErrUnavailable", err)
	}
	bad := &Source{BaseURL: "ftp://example.org"}
	if _, err := bad.Keys(ctx, "alice"); !errors.Is(err, api.ErrUnavailable) || !strings.Contains(err.Error(), "base URL") {
		t.Errorf("Keys with an ftp base URL = %v, want ErrUnavailable naming the base URL", err)
	}
}

func TestParse(t *testing.T) {
	k := testKey("ssh-ed25519", 7)
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"\n  \n", nil, true},
		{k + " me@host\r\n", []string{k + " me@host"}, true},
		{k + "\n" + k + "\n", []string{k, k}, true},
		{"ssh-ed25519\n", nil, false},
		{"ssh-ed25519 !!!notbase64\n", nil, false},
		{"ssh-ed25519 AAAA\n", nil, false},
		{k + "\nNot Found\n", nil, false},
	} {
		got, err := Parse([]byte(tc.in))
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
