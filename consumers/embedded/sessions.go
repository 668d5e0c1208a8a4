package embedded

import (
	"context"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessions expires group members that stopped talking to the broker.
// kfake stops a member's session timer while its JoinGroup waits and starts
// it again only once the join's reply is written: a member whose process
// died during a rebalance (SIGKILL) never gets one, stays in the group for
// good and keeps the partitions assigned to it, which nobody then
// consumes. A real Kafka broker expires it after its session timeout;
// sessions does the same here: it watches every member's requests and,
// once a member has been silent past its session timeout (its rebalance
// timeout too, while a join or sync may be waiting at the coordinator),
// sends a LeaveGroup for it. A member already gone answers
// UNKNOWN_MEMBER_ID, which is fine.
type sessions struct {
	mu      sync.Mutex
	members map[memberKey]*memberSeen
	// groups holds each group's latest bounds from a JoinGroup, for
	// members whose own were not seen (a first join carries no member id).
	groups map[string]bounds
	now    func() time.Time
}

type bounds struct{ session, rebalance time.Duration }

type memberKey struct{ group, member string }

type memberSeen struct {
	last             time.Time
	waiting          bool // the latest request was a JoinGroup or SyncGroup
	session, rebound time.Duration
}

// sessionGrace is added to a member's bounds before it is expired.
const sessionGrace = 2 * time.Second

func newSessions() *sessions {
	return &sessions{members: map[memberKey]*memberSeen{}, groups: map[string]bounds{}, now: time.Now}
}

// watch records, on c, every request that shows a member is alive.
func (s *sessions) watch(c *kfake.Cluster) {
	observe := func(req kmsg.Request) (kmsg.Response, error, bool) {
		switch r := req.(type) {
		case *kmsg.JoinGroupRequest:
			s.seen(r.Group, r.MemberID, true, time.Duration(r.SessionTimeoutMillis)*time.Millisecond,
				time.Duration(r.RebalanceTimeoutMillis)*time.Millisecond)
		case *kmsg.SyncGroupRequest:
			s.seen(r.Group, r.MemberID, true, 0, 0)
		case *kmsg.HeartbeatRequest:
			s.seen(r.Group, r.MemberID, false, 0, 0)
		case *kmsg.OffsetCommitRequest:
			s.seen(r.Group, r.MemberID, false, 0, 0)
		case *kmsg.LeaveGroupRequest:
			s.left(r)
		}
		return nil, nil, false // observed only: kfake handles it
	}
	for _, k := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.OffsetCommit, kmsg.LeaveGroup} {
		c.ControlKey(k.Int16(), observe)
	}
}

func (s *sessions) seen(group, member string, waiting bool, session, rebalance time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if session > 0 {
		s.groups[group] = bounds{session, rebalance}
	}
	if member == "" {
		return // a first join: the member has no id yet (adopt finds it)
	}
	k := memberKey{group, member}
	m := s.members[k]
	if m == nil {
		m = &memberSeen{}
		s.members[k] = m
	}
	m.last, m.waiting = s.now(), waiting
	if session > 0 {
		m.session, m.rebound = session, rebalance
	}
}

func (s *sessions) left(r *kmsg.LeaveGroupRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, memberKey{r.Group, r.MemberID})
	for _, m := range r.Members {
		delete(s.members, memberKey{r.Group, m.MemberID})
	}
}

// adopt starts watching the members of group the broker lists that no
// request showed yet (a member that joined with no id and died before
// its next request), as if just seen waiting.
func (s *sessions) adopt(group string, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		k := memberKey{group, id}
		if s.members[k] == nil {
			s.members[k] = &memberSeen{last: s.now(), waiting: true}
		}
	}
}

// watchedGroups are the groups a JoinGroup was seen for.
func (s *sessions) watchedGroups() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.groups))
	for g := range s.groups {
		out = append(out, g)
	}
	return out
}

// expired returns the members silent past their bounds, and forgets them.
func (s *sessions) expired() []memberKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []memberKey
	for k, m := range s.members {
		b := bounds{m.session, m.rebound}
		if b.session == 0 {
			if b = s.groups[k.group]; b.session == 0 {
				continue // no JoinGroup of the group seen: its bounds are unknown
			}
		}
		bound := b.session
		if m.waiting {
			bound += b.rebalance
		}
		if now.Sub(m.last) > bound+sessionGrace {
			out = append(out, k)
			delete(s.members, k)
		}
	}
	return out
}

// run expires silent members every second until stop is closed.
func (s *sessions) run(addr string, stop <-chan struct{}) {
	// Its own transport: kafka-go's default one caches metadata for 6 s,
	// and a producer of the same process sharing it would not see a topic
	// created since.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 5 * time.Second}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, g := range s.watchedGroups() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{g}})
			cancel()
			if err != nil || len(resp.Groups) != 1 {
				continue
			}
			ids := make([]string, 0, len(resp.Groups[0].Members))
			for _, m := range resp.Groups[0].Members {
				ids = append(ids, m.MemberID)
			}
			s.adopt(g, ids)
		}
		for _, k := range s.expired() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = cl.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: k.group,
				Members: []kafka.LeaveGroupRequestMember{{ID: k.member}}})
			cancel()
		}
	}
}
