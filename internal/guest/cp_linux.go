package guest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// routeCopy registers the copy routes (spec §3.8, cp-v1). They speak the
// public wire protocol of /vm/{h}/cp as it is, so the daemon passes
// requests and answers through unchanged.
func (s *Server) routeCopy(mux *http.ServeMux) {
	mux.HandleFunc("POST "+agent.PathCopy, s.copyUpload)
	mux.HandleFunc("GET "+agent.PathCopy, s.copyDownload)
}

// copyUpload writes a file or a tar stream into the guest and answers 200
// with a copyResult.
func (s *Server) copyUpload(w http.ResponseWriter, r *http.Request) {
	u, err := parseUpload(r.URL.Query(), r.Header, r.ContentLength)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	res, err := s.receive(r.Context(), u, r.Body)
	if err != nil {
		s.log.Info("copy upload failed", "path", u.rawPath, "err", err)
		agent.WriteError(w, err)
		return
	}
	s.log.Debug("copy upload", "path", res.Path, "bytes", res.Bytes)
	agent.WriteJSON(w, http.StatusOK, res)
}

// copyDownload sends a file's bytes or a directory's tar, reading as the
// user the request is for (see actor.do). Everything that can fail before
// the first byte is answered with a status; a failure while streaming
// aborts the stream, so the host sees a broken body rather than a short
// copy.
func (s *Server) copyDownload(w http.ResponseWriter, r *http.Request) {
	d, err := parseDownload(r.URL.Query())
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	act, err := s.actor(d.uid, d.gid)
	if err != nil {
		agent.WriteError(w, err)
		return
	}
	if err := act.do(func() error { return s.sendDownload(w, r, d, act.Home) }); err != nil {
		agent.WriteError(w, err)
	}
}

// sendDownload is copyDownload once the agent acts as the user whose home
// is home. An error is returned only before the answer has started.
func (s *Server) sendDownload(w http.ResponseWriter, r *http.Request, d download, home string) error {
	p, err := guestPath("path", d.rawPath, home)
	if err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q does not exist", api.ErrNotFound, p)
	}
	if err != nil {
		return fsError("stat", p, err)
	}
	isTar, err := downloadIsTar(d.mode, p, fi.Mode())
	if err != nil {
		return err
	}
	if d.v1 {
		typ := api.CopySourceFile
		if isTar {
			typ = api.CopySourceDirectory
		}
		w.Header().Set(api.HeaderSourceType, typ)
		w.Header().Set(api.HeaderSourceNameBase64, base64.RawURLEncoding.EncodeToString([]byte(downloadName(d.rawPath, p))))
	}
	if isTar {
		return s.sendTree(w, r, p, d.exclude)
	}
	return s.sendFile(w, r, p)
}

// sendFile streams one regular file, with its mode in X-Slicer-File-Mode.
func (s *Server) sendFile(w http.ResponseWriter, r *http.Request, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fsError("open", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%w: %q is not a regular file", api.ErrInvalid, p)
	}
	if err != nil {
		return err
	}
	w.Header().Set(api.HeaderFileMode, octalMode(fi.Mode()))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	n, rerr, werr := copyBuffer(w, ctxReader{r.Context(), f}, make([]byte, copyBufSize))
	if err := errors.Join(rerr, werr); err != nil {
		s.abortDownload(p, n, err)
	}
	s.log.Debug("copy download", "path", p, "bytes", n)
	return nil
}

// sendTree streams a directory as a copy tar. A path that is a symbolic
// link to a directory sends the directory.
func (s *Server) sendTree(w http.ResponseWriter, r *http.Request, p string, exclude []string) error {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fsError("resolve", p, err)
	}
	dir, err := os.Open(real)
	if err != nil {
		return fsError("open", p, err)
	}
	dir.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if err := writeTree(r.Context(), w, real, exclude, make([]byte, copyBufSize)); err != nil {
		s.abortDownload(p, -1, err)
	}
	s.log.Debug("copy download", "path", p, "tar", true)
	return nil
}

// abortDownload ends a download whose answer has started: the stream is
// cut, which the host reads as a failed copy.
func (s *Server) abortDownload(p string, sent int64, err error) {
	s.log.Warn("copy download failed while streaming", "path", p, "sent", sent, "err", err)
	panic(http.ErrAbortHandler)
}
