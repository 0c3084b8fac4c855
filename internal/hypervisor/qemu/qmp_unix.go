//go:build unix

package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
)

// ExecuteFD is Execute with the open file descriptor fd passed to QEMU
// alongside the command (SCM_RIGHTS), as getfd expects. QEMU gets its own
// duplicate: the caller still owns fd.
func (q *QMP) ExecuteFD(ctx context.Context, cmd string, args any, fd int) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ret, err := q.execute(ctx, cmd, args, syscall.UnixRights(fd))
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	return ret, nil
}
