package qemu

import (
	"context"
	"fmt"

	"github.com/openslicer/openslicer/internal/hypervisor"
)

// shape returns the shape of the running machine that a save records:
// its command line's (shapeFromArgs, which works the same for a machine
// an earlier daemon started), with its disks as QEMU has them now
// (liveDisks). The caller holds qmpMu.
func (m *machine) shape(ctx context.Context) (hypervisor.Shape, error) {
	shape, err := shapeFromArgs(m.args)
	if err != nil || len(shape.Disks) == 0 {
		return shape, err
	}
	err = m.session(ctx, func(q *QMP) error {
		ret, err := q.Execute(ctx, "query-block", nil)
		if err != nil {
			return err
		}
		shape.Disks, err = liveDisks(shape.Disks, ret)
		return err
	})
	if err != nil {
		return shape, fmt.Errorf("the machine's disks: %w", err)
	}
	return shape, nil
}
