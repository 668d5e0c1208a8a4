package consumers

import (
	"context"
	"fmt"

	"github.com/ember-run/ember/consumers/lagmon"
)

// Lag returns the offsets of binding b's consumer group on each partition
// of its topic, in partition order. b need not be running. A process that
// watches lag continuously uses a lagmon.Monitor instead.
func (m *Manager) Lag(ctx context.Context, b Binding) ([]lagmon.Offsets, error) {
	b = b.withDefaults()
	cl, done := m.adminClient()
	defer done()
	offs, err := lagmon.ReadOffsets(ctx, cl, b.Topic, b.GroupID)
	if err != nil {
		return nil, fmt.Errorf("lag of binding %q: %w", b.ID, err)
	}
	return offs, nil
}
