package agent

import (
	"fmt"
	"net/http"
)

// Do sends req to the agent on a new stream and returns the agent's answer
// as it is, whatever its status: it is how the daemon passes a guest
// operation through. Only req's method, path, query, headers and body are
// used; the host part of its URL is ignored. The caller closes the body.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host = "http", "agent"
	out.URL, out.Host, out.RequestURI = &u, "agent", ""
	resp, err := c.http.Do(out)
	if err != nil {
		return nil, fmt.Errorf("agent %s %s: %w", req.Method, req.URL.Path, err)
	}
	return resp, nil
}
