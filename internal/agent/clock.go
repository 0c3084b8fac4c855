package agent

import (
	"context"
	"net/http"
	"time"
)

// Clock is the body of PUT /v1/clock: the host's wall clock.
type Clock struct {
	UnixNano int64 `json:"unix_nano"`
}

// SetClock sets the guest's wall clock to now. An agent that is not the
// guest's init answers with an error that unwraps to api.ErrNotImplemented.
func (c *Client) SetClock(ctx context.Context, now time.Time) error {
	return c.doJSON(ctx, http.MethodPut, PathClock, Clock{UnixNano: now.UnixNano()}, nil)
}
