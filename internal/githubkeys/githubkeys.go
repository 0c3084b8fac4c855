// Package githubkeys fetches the public SSH keys GitHub publishes for a user
// at https://github.com/USER.keys: the keys a create's import_user (alias
// github_user) and the config's github_user install in guests, as ssh_keys
// are.
//
// The daemon fetches them, not the guest: a guest may have no route out
// (isolated groups with an allow list, no network at all), and a create
// can then fail before anything exists when the keys cannot be had.
package githubkeys

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/openslicer/openslicer/api"
)

// DefaultBaseURL is where keys are fetched from when Source.BaseURL is
// empty.
const DefaultBaseURL = "https://github.com"

// EnvBaseURL is the environment variable `slicer up` reads Source.BaseURL
// from (tests serve keys from a loopback server).
const EnvBaseURL = "SLICER_GITHUB_KEYS_URL"

// maxBody bounds a key list (GitHub's are a few KiB).
const maxBody = 1 << 20

// timeout bounds one fetch.
const timeout = 15 * time.Second

// userName is what GitHub accepts as a login: letters, digits and hyphens,
// not starting with a hyphen, at most 39 characters.
var userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)

// Source fetches keys from BaseURL + "/" + user + ".keys".
type Source struct {
	// BaseURL is the key server; empty means DefaultBaseURL.
	BaseURL string
	// Client makes the requests; nil means a client with a 15 s timeout.
	Client *http.Client
}

// Keys returns the public SSH keys of user, one authorized_keys line each.
// A name GitHub cannot have, a user that does not exist and one without
// keys are api.ErrInvalid (the request must change); a key server that
// cannot be reached, fails or answers something that is not a key list is
// api.ErrUnavailable (the same request may work later).
func (s *Source) Keys(ctx context.Context, user string) ([]string, error) {
	if !userName.MatchString(user) {
		return nil, fmt.Errorf("%w: %q is not a GitHub user name (letters, digits and hyphens, at most 39)", api.ErrInvalid, user)
	}
	u, err := s.keysURL(user)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: keys of GitHub user %q: %w", api.ErrUnavailable, user, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: keys of GitHub user %q: %w", api.ErrUnavailable, user, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: GitHub user %q does not exist (%s answered 404)", api.ErrInvalid, user, u)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: keys of GitHub user %q: %s answered %s", api.ErrUnavailable, user, u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: keys of GitHub user %q: %w", api.ErrUnavailable, user, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%w: keys of GitHub user %q: %s answered more than %d bytes", api.ErrUnavailable, user, u, maxBody)
	}
	keys, err := Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: keys of GitHub user %q from %s: %w", api.ErrUnavailable, user, u, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: GitHub user %q has no public SSH keys", api.ErrInvalid, user)
	}
	return keys, nil
}

// Check reports a BaseURL that is not an http(s) URL.
func (s *Source) Check() error {
	_, err := s.keysURL("user")
	return err
}

func (s *Source) keysURL(user string) (string, error) {
	base := s.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: GitHub keys base URL %q is not an http(s) URL", api.ErrUnavailable, base)
	}
	return strings.TrimSuffix(base, "/") + "/" + user + ".keys", nil
}

func (s *Source) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return &http.Client{Timeout: timeout}
}

// Parse reads a key list: one public key per line ("type base64
// [comment]"), blank lines skipped. Any other line is an error: an answer
// that is not a key list (a login page, a proxy's error) must not end up
// in authorized_keys.
func Parse(data []byte) ([]string, error) {
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxBody)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if err := checkKey(line); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		keys = append(keys, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

// checkKey checks that line is an SSH public key: a key type, then the
// base64 of a key blob that starts with that same type (the SSH wire
// encoding: a 4-byte big-endian length, then the name).
func checkKey(line string) error {
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return errors.New("not an SSH public key (want \"type base64 [comment]\")")
	}
	typ := fields[0]
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return fmt.Errorf("key of type %q: the key is not base64", typ)
	}
	if len(blob) < 4 {
		return fmt.Errorf("key of type %q is too short", typ)
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) || string(blob[4:4+n]) != typ {
		return fmt.Errorf("key of type %q does not encode that type", typ)
	}
	return nil
}
