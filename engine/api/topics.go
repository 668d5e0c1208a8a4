package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/tenants"
)

func topicJSON(t registry.Topic) wire.Topic {
	out := wire.Topic{Name: t.Name, Owner: t.Owner, Partitions: t.Partitions, Created: t.Created}
	if len(t.Grants) > 0 {
		out.Grants = make(map[string]string, len(t.Grants))
		for k, v := range t.Grants {
			out.Grants[k] = string(v)
		}
	}
	return out
}

// createTopic creates a Kafka topic in the tenant's namespace and records
// it as the tenant's.
func (s *Server) createTopic(w http.ResponseWriter, r *http.Request, tenant string) {
	var in wire.CreateTopic
	if !s.decode(w, r, &in, "topic") {
		return
	}
	if in.Partitions == 0 {
		in.Partitions = DefaultPartitions
	}
	if in.Partitions < 1 || in.Partitions > maxPartitions {
		s.fail(w, r, invalid("partitions %d: want 1..%d", in.Partitions, maxPartitions))
		return
	}
	if err := registry.ValidTopic(in.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	name := registry.TenantTopic(tenant, in.Name)
	if err := registry.ValidTopic(name); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.deps.Topics == nil {
		s.fail(w, r, fmt.Errorf("no topic admin configured: %w", registry.ErrUnavailable))
		return
	}
	// The registry refuses a name someone else holds before Kafka is asked.
	if t, err := s.deps.Registry.GetTopic(r.Context(), name); err == nil && t.Owner != tenant {
		s.fail(w, r, fmt.Errorf("topic %q exists: %w", name, registry.ErrConflict))
		return
	}
	if err := s.deps.Topics.CreateTopic(r.Context(), name, in.Partitions); errors.Is(err, consumers.ErrTopicRefused) {
		s.fail(w, r, fmt.Errorf("%w: %w", err, registry.ErrInvalid))
		return
	} else if err != nil {
		s.failWith(w, r, fmt.Errorf("create topic %s: %w", name, err), http.StatusBadGateway)
		return
	}
	t, err := s.deps.Registry.PutTopic(r.Context(), registry.Topic{Name: name, Owner: tenant, Partitions: in.Partitions})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("tenant", tenant).Str("topic", name).Int("partitions", in.Partitions).Msg("topic created")
	writeJSON(w, http.StatusCreated, topicJSON(t))
}

// listTopics: a tenant's own and granted topics; every topic for the
// administrator.
func (s *Server) listTopics(w http.ResponseWriter, r *http.Request, p tenants.Principal) {
	ts, err := s.deps.Registry.ListTopics(r.Context(), p.Tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Topics{Topics: make([]wire.Topic, 0, len(ts))}
	for _, t := range ts {
		out.Topics = append(out.Topics, topicJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteTopic deletes one of the tenant's own topics (registry first, so a
// binding cannot be made on a topic being deleted, then Kafka).
func (s *Server) deleteTopic(w http.ResponseWriter, r *http.Request, tenant string) {
	name, err := s.deps.Registry.DeleteTopic(r.Context(), tenant, r.PathValue("topic"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if name != "" && s.deps.Topics != nil {
		if err := s.deps.Topics.DeleteTopic(r.Context(), name); err != nil {
			s.failWith(w, r, fmt.Errorf("delete topic %s: %w", name, err), http.StatusBadGateway)
			return
		}
		s.log.Info().Str("tenant", tenant).Str("topic", name).Msg("topic deleted")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) grantTopic(w http.ResponseWriter, r *http.Request) {
	var in wire.Grant
	if !s.decode(w, r, &in, "grant") {
		return
	}
	a, err := registry.ParseAccess(in.Access)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	topic, tenant := r.PathValue("topic"), r.PathValue("tenant")
	if err := s.deps.Registry.Grant(r.Context(), topic, tenant, a); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("topic", topic).Str("tenant", tenant).Str("access", string(a)).Msg("topic granted")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ungrantTopic(w http.ResponseWriter, r *http.Request) {
	topic, tenant := r.PathValue("topic"), r.PathValue("tenant")
	if err := s.deps.Registry.Ungrant(r.Context(), topic, tenant); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// produce writes records to a topic the tenant may produce to.
func (s *Server) produce(w http.ResponseWriter, r *http.Request, tenant string) {
	topic, err := s.deps.Registry.ResolveTopic(r.Context(), tenant, r.PathValue("topic"), registry.AccessProduce)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.deps.Producer == nil {
		s.fail(w, r, fmt.Errorf("no producer configured: %w", registry.ErrUnavailable))
		return
	}
	var in wire.ProduceRequest
	if !s.decodeLimit(w, r, &in, "records", s.cfg.MaxPayloadBytes) {
		return
	}
	if len(in.Records) == 0 || len(in.Records) > maxProduceRecords {
		s.fail(w, r, invalid("want 1..%d records, got %d", maxProduceRecords, len(in.Records)))
		return
	}
	recs := make([]Record, len(in.Records))
	for i, rec := range in.Records {
		recs[i] = Record{Value: []byte(rec.Value), Headers: rec.Headers}
		if rec.Key != "" {
			recs[i].Key = []byte(rec.Key)
		}
	}
	if err := s.deps.Producer.Produce(r.Context(), topic, recs); err != nil {
		s.failWith(w, r, fmt.Errorf("produce to %s: %w", topic, err), http.StatusBadGateway)
		return
	}
	writeJSON(w, http.StatusOK, wire.ProduceResponse{Topic: topic, Produced: len(recs)})
}
