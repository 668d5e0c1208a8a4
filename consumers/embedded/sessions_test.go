package embedded

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSessionsExpireSilentMembers: a member is expired once silent past its
// session timeout (plus its rebalance timeout while its join or sync may
// wait at the coordinator); one that leaves is forgotten.
func TestSessionsExpireSilentMembers(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSessions()
	s.now = func() time.Time { return now }
	s.seen("g", "", true, 6*time.Second, time.Minute) // a first join: no id yet
	s.seen("g", "joining", true, 6*time.Second, time.Minute)
	s.seen("g", "stable", true, 6*time.Second, time.Minute)
	s.seen("g", "stable", false, 0, 0) // its heartbeat: no longer waiting
	s.seen("g", "gone", true, 6*time.Second, time.Minute)
	s.left(leave{group: "g", member: "gone"}.req())

	now = now.Add(6*time.Second + sessionGrace + time.Millisecond)
	if got := s.expired(); len(got) != 1 || got[0] != (memberKey{"g", "stable"}) {
		t.Fatalf("after the session timeout: %v, want only the silent heartbeating member", got)
	}
	if got := s.expired(); len(got) != 0 {
		t.Fatalf("expired twice: %v", got)
	}
	now = now.Add(time.Minute)
	if got := s.expired(); len(got) != 1 || got[0] != (memberKey{"g", "joining"}) {
		t.Fatalf("after the rebalance timeout too: %v, want the member whose join never came back", got)
	}

	// A member the broker lists that no request showed (it joined with no
	// id and died): watched from then on, with the group's bounds.
	s.adopt("g", []string{"silent"})
	s.adopt("other", []string{"unknown-bounds"})
	now = now.Add(time.Minute + 6*time.Second + sessionGrace + time.Millisecond)
	if got := s.expired(); len(got) != 1 || got[0] != (memberKey{"g", "silent"}) {
		t.Fatalf("an adopted member: %v, want it expired with the group's bounds (and nothing of a group never seen joining)", got)
	}
}

type leave struct{ group, member string }

func (l leave) req() *kmsg.LeaveGroupRequest {
	r := kmsg.NewPtrLeaveGroupRequest()
	r.Group = l.group
	r.Members = []kmsg.LeaveGroupRequestMember{{MemberID: l.member}}
	return r
}
