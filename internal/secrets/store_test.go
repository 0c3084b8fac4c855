package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// openAt opens a store in a fresh directory with a clock that advances one
// second per call.
func openAt(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), ".secrets"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var mu sync.Mutex
	tick := t0
	s.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		tick = tick.Add(time.Second)
		return tick
	}
	return s
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func create(t *testing.T, s *Store, name, value string) api.Secret {
	t.Helper()
	sec, err := s.Create(context.Background(), api.CreateSecretRequest{Name: name, Data: b64(value)})
	if err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	return sec
}

func at(d int) *time.Time { t := t0.Add(time.Duration(d) * time.Second); return &t }

// tempFiles lists the temporary files in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCreateValidation(t *testing.T) {
	tests := []struct {
		name string
		req  api.CreateSecretRequest
		want api.Secret // when no error
		err  error
	}{
		{name: "defaults",
			req:  api.CreateSecretRequest{Name: "a", Data: b64("hello")},
			want: api.Secret{Name: "a", Size: 5, Permissions: "0600", ModifiedAt: at(1)}},
		{name: "owner and mode",
			req:  api.CreateSecretRequest{Name: "b", Data: b64("xy"), Permissions: "444", UID: 1000, GID: 100},
			want: api.Secret{Name: "b", Size: 2, Permissions: "0444", UID: 1000, GID: 100, ModifiedAt: at(1)}},
		{name: "empty value",
			req:  api.CreateSecretRequest{Name: "c"},
			want: api.Secret{Name: "c", Size: 0, Permissions: "0600", ModifiedAt: at(1)}},
		{name: "bad base64", req: api.CreateSecretRequest{Name: "d", Data: "not base64!"}, err: api.ErrInvalid},
		{name: "bad name", req: api.CreateSecretRequest{Name: "../d", Data: b64("x")}, err: api.ErrInvalid},
		{name: "no name", req: api.CreateSecretRequest{Data: b64("x")}, err: api.ErrInvalid},
		{name: "bad permissions", req: api.CreateSecretRequest{Name: "e", Data: b64("x"), Permissions: "0o600"}, err: api.ErrInvalid},
		{name: "permissions over 0777", req: api.CreateSecretRequest{Name: "e", Data: b64("x"), Permissions: "2777"}, err: api.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openAt(t)
			got, err := s.Create(context.Background(), tt.req)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Create() error = %v, want %v", err, tt.err)
				}
				if list, _ := s.List(); len(list) != 0 {
					t.Fatalf("List() after failed Create = %v, want empty", list)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Create() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s := openAt(t)
	create(t, s, "zeta", "z-value")  // t0+1
	create(t, s, "alpha", "a-value") // t0+2
	_, err := s.Create(ctx, api.CreateSecretRequest{Name: "alpha", Data: b64("again")})
	if !errors.Is(err, api.ErrAlreadyExists) {
		t.Fatalf("Create(existing) error = %v, want api.ErrAlreadyExists", err)
	}

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Secret{
		{Name: "alpha", Size: 7, Permissions: "0600", ModifiedAt: at(2)},
		{Name: "zeta", Size: 7, Permissions: "0600", ModifiedAt: at(1)},
	}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Fatalf("List() (-want +got):\n%s", diff)
	}

	// Only the provided field changes.
	mode := "0440"
	got, err := s.Update(ctx, "alpha", api.UpdateSecretRequest{Permissions: &mode}) // t0+3
	if err != nil {
		t.Fatal(err)
	}
	wantAlpha := api.Secret{Name: "alpha", Size: 7, Permissions: "0440", ModifiedAt: at(3)}
	if diff := cmp.Diff(wantAlpha, got); diff != "" {
		t.Fatalf("Update(permissions) (-want +got):\n%s", diff)
	}
	sec, data, err := s.Get("alpha")
	if err != nil || string(data) != "a-value" {
		t.Fatalf("Get(alpha) = %q, %v; want the old value", data, err)
	}
	if diff := cmp.Diff(wantAlpha, sec); diff != "" {
		t.Fatalf("Get(alpha) (-want +got):\n%s", diff)
	}

	newData, uid := b64("longer value"), uint32(1000)
	if _, err := s.Update(ctx, "alpha", api.UpdateSecretRequest{Data: &newData, UID: &uid}); err != nil { // t0+4
		t.Fatal(err)
	}
	sec, data, err = s.Get("alpha")
	if err != nil || string(data) != "longer value" {
		t.Fatalf("Get(alpha) = %q, %v; want the new value", data, err)
	}
	wantAlpha = api.Secret{Name: "alpha", Size: 12, Permissions: "0440", UID: 1000, ModifiedAt: at(4)}
	if diff := cmp.Diff(wantAlpha, sec); diff != "" {
		t.Fatalf("Get(alpha) after data update (-want +got):\n%s", diff)
	}

	// An empty update changes nothing, modified_at included.
	empty := ""
	if got, err := s.Update(ctx, "alpha", api.UpdateSecretRequest{Data: &empty}); err != nil || !got.ModifiedAt.Equal(*at(4)) {
		t.Fatalf("Update(empty) = %+v, %v; want modified_at unchanged", got, err)
	}

	bad := "%%%"
	if _, err := s.Update(ctx, "alpha", api.UpdateSecretRequest{Data: &bad}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("Update(bad base64) error = %v, want api.ErrInvalid", err)
	}
	for _, name := range []string{"missing", "../alpha", ""} {
		if _, err := s.Update(ctx, name, api.UpdateSecretRequest{Data: &newData}); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("Update(%q) error = %v, want api.ErrNotFound", name, err)
		}
		if err := s.Delete(name); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("Delete(%q) error = %v, want api.ErrNotFound", name, err)
		}
		if _, _, err := s.Get(name); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want api.ErrNotFound", name, err)
		}
	}

	if err := s.Delete("zeta"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "zeta")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("value file of a deleted secret: stat error = %v, want not exist", err)
	}
	if err := s.Delete("zeta"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Delete twice error = %v, want api.ErrNotFound", err)
	}
	// A deleted name can be created again.
	create(t, s, "zeta", "back")

	// Everything survives a reopen.
	before, _ := s.List()
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	after, err := s2.List()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("List() after reopen (-before +after):\n%s", diff)
	}
	if _, data, _ := s2.Get("alpha"); string(data) != "longer value" {
		t.Fatalf("Get(alpha) after reopen = %q", data)
	}
}

func TestSelect(t *testing.T) {
	s := openAt(t)
	create(t, s, "b", "bee")
	create(t, s, "a", "ay")
	create(t, s, "c", "see")

	names := func(es []Entry) string {
		var out []string
		for _, e := range es {
			out = append(out, e.Name+"="+string(e.Data))
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		in   []string
		want string
		err  error
	}{
		{in: nil, want: "a=ay,b=bee,c=see"},
		{in: []string{}, want: ""},
		{in: []string{"c", "a"}, want: "a=ay,c=see"},
		{in: []string{"b", "b"}, want: "b=bee"},
		{in: []string{"a", "nope"}, err: api.ErrNotFound},
	}
	for _, tt := range tests {
		got, err := s.Select(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Select(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || names(got) != tt.want {
			t.Errorf("Select(%q) = %s, %v; want %s", tt.in, names(got), err, tt.want)
		}
	}
	got, _ := s.Select([]string{"a"})
	if got[0].Permissions != "0600" || got[0].Size != 2 {
		t.Errorf("Select metadata = %+v, want permissions 0600 size 2", got[0].Secret)
	}
}

func TestFileModesOnDisk(t *testing.T) {
	s := openAt(t)
	// The guest mode is metadata; on the host the value stays 0600.
	if _, err := s.Create(context.Background(), api.CreateSecretRequest{Name: "open", Data: b64("x"), Permissions: "0777"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want os.FileMode
	}{
		{s.Dir(), os.ModeDir | 0o700},
		{filepath.Join(s.Dir(), "open"), 0o600},
		{filepath.Join(s.Dir(), indexName), 0o600},
	}
	for _, tt := range tests {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tt.want {
			t.Errorf("mode of %s = %v, want %v", tt.path, fi.Mode(), tt.want)
		}
	}
}

func TestOpenRefusesLooseDir(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o700, true},
		{0o755, false},
		{0o750, false},
		{0o701, false},
		{0o710, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%04o", uint32(tt.mode)), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir)
			if tt.ok && err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "chmod 0700 "+dir)) {
				t.Fatalf("Open() error = %v, want one naming chmod 0700 %s", err, dir)
			}
		})
	}
}

func TestOpenRefusesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("Open(a regular file) succeeded")
	}
}

func TestOpenRemovesStaleTemps(t *testing.T) {
	s := openAt(t)
	stale := filepath.Join(s.Dir(), tempPrefix+"x-123")
	if err := os.WriteFile(stale, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if left := tempFiles(t, s.Dir()); len(left) != 0 {
		t.Fatalf("temporary files after Open = %v, want none", left)
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	// A directory where the value file should go makes the rename fail.
	s := openAt(t)
	if err := os.Mkdir(filepath.Join(s.Dir(), "blocked"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(context.Background(), api.CreateSecretRequest{Name: "blocked", Data: b64("v")}); err == nil {
		t.Fatal("Create over a directory succeeded")
	}
	if left := tempFiles(t, s.Dir()); len(left) != 0 {
		t.Fatalf("temporary files after a failed Create = %v", left)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Fatalf("List() after a failed Create = %v, want empty", list)
	}
}

// breakIndex replaces the index file with a directory, so the next index
// write fails at the rename.
func breakIndex(t *testing.T, s *Store) {
	t.Helper()
	index := filepath.Join(s.Dir(), indexName)
	if err := os.Remove(index); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(index, 0o700); err != nil {
		t.Fatal(err)
	}
}

func TestIndexFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	s := openAt(t)
	create(t, s, "kept", "old")
	breakIndex(t, s)

	if _, err := s.Create(ctx, api.CreateSecretRequest{Name: "new", Data: b64("v")}); err == nil {
		t.Fatal("Create with a broken index succeeded")
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("value of an uncommitted Create: stat error = %v, want not exist", err)
	}
	if _, _, err := s.Get("new"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Get(new) error = %v, want api.ErrNotFound", err)
	}

	data := b64("replacement")
	if _, err := s.Update(ctx, "kept", api.UpdateSecretRequest{Data: &data}); err == nil {
		t.Fatal("Update with a broken index succeeded")
	}
	sec, value, err := s.Get("kept")
	if err != nil || string(value) != "old" || sec.Size != 3 || !sec.ModifiedAt.Equal(*at(1)) {
		t.Errorf("Get(kept) after a failed Update = %+v, %q, %v; want the old value and metadata", sec, value, err)
	}

	if err := s.Delete("kept"); err == nil {
		t.Fatal("Delete with a broken index succeeded")
	}
	if _, value, err := s.Get("kept"); err != nil || string(value) != "old" {
		t.Errorf("Get(kept) after a failed Delete = %q, %v; want it still there", value, err)
	}
	if left := tempFiles(t, s.Dir()); len(left) != 0 {
		t.Fatalf("temporary files after failed writes = %v", left)
	}
}

func TestConcurrentCreateSameName(t *testing.T) {
	s := openAt(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Create(context.Background(), api.CreateSecretRequest{Name: "race", Data: b64(fmt.Sprint("value-", i))})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("creates %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, api.ErrAlreadyExists):
			t.Fatalf("create %d: error = %v, want api.ErrAlreadyExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no create succeeded")
	}
	if _, data, err := s.Get("race"); err != nil || string(data) != fmt.Sprint("value-", winner) {
		t.Fatalf("Get(race) = %q, %v; want the winner's value-%d", data, err, winner)
	}
}

func TestConcurrentCreatesLoseNothing(t *testing.T) {
	s := openAt(t)
	const n = 24
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Create(context.Background(), api.CreateSecretRequest{Name: fmt.Sprintf("s%02d", i), Data: b64("v")}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if list, err := s2.List(); err != nil || len(list) != n {
		t.Fatalf("List() after reopen has %d secrets, %v; want %d", len(list), err, n)
	}
}

func TestCanceledContext(t *testing.T) {
	s := openAt(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Create(ctx, api.CreateSecretRequest{Name: "a", Data: b64("v")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create(canceled) error = %v, want context.Canceled", err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Fatalf("List() = %v, want empty", list)
	}
}
