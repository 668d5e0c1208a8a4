package consumers

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/kafkaevent"
	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/invoke"
)

// Error types written in HeaderErrorType for records Ember dead-lettered
// itself (function errors carry the function's own type).
const (
	// ErrorTypePayloadTooLarge: the record's event alone exceeds the
	// binding's MaxBatchBytes; never invoked.
	ErrorTypePayloadTooLarge = "PayloadTooLarge"
	// ErrorTypeMaxRecordAge: the record was older than MaxRecordAge
	// before it could be handled.
	ErrorTypeMaxRecordAge = "MaxRecordAgeExceeded"
	// ErrorTypeResponseTooLarge: the function's response exceeds what the
	// result topic takes.
	ErrorTypeResponseTooLarge = "ResponseTooLarge"
	// ErrorTypeBadBatchResponse: a partial batch response that does not
	// follow the documented shape (the whole batch failed).
	ErrorTypeBadBatchResponse = "InvalidBatchItemFailures"
)

// handle runs batch (whose event is payload) to an end: every record
// invoked successfully, or dead-lettered, and marked finished. It reports
// false when the partition was revoked first; unfinished records are then
// left to the partition's next owner.
func (p *partition) handle(batch []*record, payload []byte, hold string) bool {
	if p.c.metrics != nil {
		p.c.metrics.batchSize.Observe(float64(len(batch)))
	}
	return p.process(batch, payload, 0, hold)
}

// process invokes recs until each is finished. failures counts the
// function failures recs have seen (attempts beyond the first are
// retries). payload is recs' event, or nil to encode it.
func (p *partition) process(recs []*record, payload []byte, failures int, hold string) bool {
	c := p.c
	b := &c.b
	platform := p.c.retryBackoff()
	retry := p.c.retryBackoff()
	for {
		if p.g.soft.Err() != nil {
			return false // revoked: nothing new starts
		}
		if b.MaxRecordAge > 0 {
			var old []*record
			if recs, old = splitByAge(recs, time.Now().Add(-b.MaxRecordAge)); len(old) > 0 {
				reason := fmt.Sprintf("record older than the binding's max record age of %v after %d failed attempts", b.MaxRecordAge, failures)
				if !p.deadLetter(old, reason, ErrorTypeMaxRecordAge, StatusNotInvoked, failures) {
					return false
				}
				p.finish(old)
				c.stats.ageDropped.Add(int64(len(old)))
				payload = nil
			}
			if len(recs) == 0 {
				return true
			}
		}
		if payload == nil {
			payload = p.encode(recs)
		}
		res, err, ok := p.invoke(recs, payload, failures+1, hold)
		if !ok {
			return false
		}
		if err != nil { // Ember's failure: retried, never counted against the records
			if !sleepCtx(p.g.soft, platform.next()) {
				return false
			}
			continue
		}
		platform.reset()

		failed, why, errType := p.outcome(res, recs)
		if failed == nil { // success
			if b.ResultTopic != "" {
				tooLarge, ok := p.produceResult(recs, res)
				if !ok {
					return false
				}
				if tooLarge != "" {
					failed, why, errType = recs, tooLarge, ErrorTypeResponseTooLarge
				}
			}
			if failed == nil {
				p.finish(recs)
				return true
			}
		}
		failures++
		c.stats.functionErrors.Add(1)
		partial := len(failed) < len(recs)
		if partial {
			// Only the failed records, and those after them in their order
			// group, are retried; the others are finished.
			again := p.retrySet(recs, failed)
			p.finish(without(recs, again))
			recs = again
		} else if b.BisectOnError && len(recs) > 1 {
			h := len(recs) / 2
			c.log.Debug().Int("partition", p.id).Int("records", len(recs)).Msg("function failed: bisecting the batch")
			return p.process(recs[:h], nil, failures, hold) && p.process(recs[h:], nil, failures, hold)
		}
		if b.MaxRetryAttempts >= 0 && failures > b.MaxRetryAttempts {
			reason := fmt.Sprintf("function failed %d attempts (max retry attempts %d): %s", failures, b.MaxRetryAttempts, why)
			c.log.Warn().Int("partition", p.id).Int64("first_offset", failed[0].msg.Offset).Int("records", len(failed)).
				Str("error_type", errType).Str("reason", why).Msg("dead-lettering records")
			if !p.deadLetter(failed, reason, errType, res.Status.String(), failures) {
				return false
			}
			p.finish(recs) // the failed ones dead-lettered, the rest succeeded
			return true
		}
		c.log.Debug().Int("partition", p.id).Int("attempt", failures).Str("reason", why).Msg("function failure, retrying")
		payload = nil
		if !sleepCtx(p.g.soft, retry.next()) {
			return false
		}
	}
}

// invoke makes one Invoke call. ok is false when the call was cancelled
// because the partition's drain time ran out.
func (p *partition) invoke(recs []*record, payload []byte, attempt int, hold string) (res invoke.Result, err error, ok bool) {
	c := p.c
	inv := &invoke.Invocation{
		ID:           invoke.NewID(),
		Tenant:       c.b.Tenant,
		Function:     c.b.Function,
		Qualifier:    c.b.Qualifier,
		Payload:      payload,
		Source:       c.b.ID,
		FirstEventAt: recs[0].fetched,
		Cause:        causeOf(c.b.Tenant, recs),
		Retry:        attempt > 1,
		HoldKey:      hold,
	}
	start := time.Now()
	if c.metrics != nil {
		c.metrics.fetchToInvoke.Observe(start.Sub(recs[0].fetched).Seconds())
	}
	res, err = c.m.invoker.Invoke(p.g.hard, inv)
	if res.InvocationID == "" {
		res.InvocationID = inv.ID
	}
	c.stats.invocations.Add(1)
	if hs := res.HandlerStart; c.metrics != nil && !hs.IsZero() && !recs[0].msg.Time.IsZero() {
		c.metrics.eventToStart.Observe(hs.Sub(recs[0].msg.Time).Seconds())
	}
	if o := c.m.cfg.observer; o != nil {
		o.InvocationDone(InvocationReport{
			Binding: c.b.ID, Topic: c.b.Topic, Partition: p.id, Records: len(recs), Attempt: attempt,
			Result: res, Err: err, FirstEventTime: recs[0].msg.Time, FirstFetched: recs[0].fetched,
			InvokeStart: start, Done: time.Now(),
		})
	}
	if err != nil {
		if p.g.hard.Err() != nil {
			return res, err, false
		}
		c.stats.platformErrors.Add(1)
		if c.metrics != nil {
			c.metrics.invocation("platform_error")
		}
		c.log.Warn().Err(err).Int("partition", p.id).Int64("first_offset", recs[0].msg.Offset).
			Msg("platform failure, retrying")
		return res, err, true
	}
	if c.metrics != nil {
		c.metrics.invocation(res.Status.String())
	}
	return res, nil, true
}

// outcome returns the records that failed in res (nil: none), why, and the
// error type to record.
func (p *partition) outcome(res invoke.Result, recs []*record) ([]*record, string, string) {
	if !res.OK() {
		why := res.Status.String()
		if res.ErrorType != "" {
			why += ": " + res.ErrorType
		}
		return recs, why, res.ErrorType
	}
	if !p.c.b.ReportBatchItemFailures {
		return nil, "", ""
	}
	failed, err := p.batchItemFailures(res.Payload, recs)
	if err != nil {
		return recs, err.Error(), ErrorTypeBadBatchResponse
	}
	if len(failed) == 0 {
		return nil, "", ""
	}
	return failed, fmt.Sprintf("the function reported %d of %d records failed", len(failed), len(recs)), "BatchItemFailure"
}

// batchItemFailures reads a partial batch response in the shape Lambda
// documents for Kafka:
//
//	{"batchItemFailures":[{"itemIdentifier":{"partition":"<topic>-<n>","offset":<offset>}}]}
//
// An empty or null response or list is a success. Anything else that does
// not name records of the batch is an error: the whole batch failed.
func (p *partition) batchItemFailures(payload []byte, recs []*record) ([]*record, error) {
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 || string(payload) == "null" {
		return nil, nil
	}
	var resp struct {
		Failures *[]struct {
			ID *struct {
				Partition *string          `json:"partition"`
				Offset    *json.RawMessage `json:"offset"`
			} `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(payload, &resp); err != nil {
		if payload[0] != '{' {
			return nil, nil // not a batch response at all (e.g. a string)
		}
		return nil, fmt.Errorf("invalid batchItemFailures response: %v", err)
	}
	if resp.Failures == nil {
		return nil, nil
	}
	want := kafkaevent.PartitionKey(p.c.b.Topic, p.id)
	byOffset := make(map[int64]*record, len(recs))
	for _, r := range recs {
		byOffset[r.msg.Offset] = r
	}
	var failed []*record
	seen := map[int64]bool{}
	for i, f := range *resp.Failures {
		if f.ID == nil || f.ID.Partition == nil || f.ID.Offset == nil {
			return nil, fmt.Errorf("batchItemFailures[%d]: itemIdentifier needs partition and offset", i)
		}
		if *f.ID.Partition != want {
			return nil, fmt.Errorf("batchItemFailures[%d]: partition %q is not the batch's %q", i, *f.ID.Partition, want)
		}
		off, err := strconv.ParseInt(string(bytes.Trim(*f.ID.Offset, `"`)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("batchItemFailures[%d]: offset %s is not an integer", i, *f.ID.Offset)
		}
		r, ok := byOffset[off]
		if !ok {
			return nil, fmt.Errorf("batchItemFailures[%d]: offset %d is not in the batch", i, off)
		}
		if !seen[off] {
			seen[off] = true
			failed = append(failed, r)
		}
	}
	sortByOffset(failed)
	return failed, nil
}

// retrySet returns the records of recs to retry after failed failed: the
// failed ones and, in their order group, every later one (partition
// ordering: everything from the first failure on; key ordering: later
// records of a failed record's key; none: only the failed ones).
func (p *partition) retrySet(recs, failed []*record) []*record {
	switch p.c.b.Ordering {
	case settings.OrderNone:
		return failed
	case settings.OrderKey:
		firstFail := map[string]int64{}
		for _, f := range failed {
			k := string(f.msg.Key)
			if o, ok := firstFail[k]; !ok || f.msg.Offset < o {
				firstFail[k] = f.msg.Offset
			}
		}
		var out []*record
		for _, r := range recs {
			if o, ok := firstFail[string(r.msg.Key)]; ok && r.msg.Offset >= o {
				out = append(out, r)
			}
		}
		return out
	default:
		from := failed[0].msg.Offset
		var out []*record
		for _, r := range recs {
			if r.msg.Offset >= from {
				out = append(out, r)
			}
		}
		return out
	}
}

// encode returns the event of recs.
func (p *partition) encode(recs []*record) []byte {
	b := kafkaevent.NewBuilder(p.c.bootstrap, 0)
	b.Reset(p.c.b.Topic, p.id)
	for _, r := range recs {
		b.Add(&r.msg)
	}
	return b.Finish()
}

// splitByAge splits recs into those with a timestamp at or after cutoff
// and those before it, keeping their order.
func splitByAge(recs []*record, cutoff time.Time) (young, old []*record) {
	for _, r := range recs {
		if r.msg.Time.Before(cutoff) {
			old = append(old, r)
		} else {
			young = append(young, r)
		}
	}
	return young, old
}

// without returns recs minus drop (both in offset order).
func without(recs, drop []*record) []*record {
	if len(drop) == 0 {
		return recs
	}
	gone := make(map[int64]bool, len(drop))
	for _, d := range drop {
		gone[d.msg.Offset] = true
	}
	out := make([]*record, 0, len(recs)-len(drop))
	for _, r := range recs {
		if !gone[r.msg.Offset] {
			out = append(out, r)
		}
	}
	return out
}

func sortByOffset(recs []*record) {
	slices.SortFunc(recs, func(a, b *record) int { return cmp.Compare(a.msg.Offset, b.msg.Offset) })
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// causeOf is the function of tenant whose results the batch carries (its
// first record's HeaderFunction), with how many of its records the batch
// holds: each is a run of it that this invocation follows.
func causeOf(tenant string, recs []*record) invoke.Cause {
	c := cause(tenant, recs[0].msg.Headers)
	if c.Function == "" {
		return c
	}
	want := tenant + "/" + c.Function
	for _, r := range recs {
		for _, h := range r.msg.Headers {
			if h.Key == HeaderFunction && string(h.Value) == want {
				c.Runs++
				break
			}
		}
	}
	return c
}

// cause reads the result headers of a record another function of tenant
// wrote (HeaderFunction, HeaderStarted).
func cause(tenant string, headers []kafka.Header) invoke.Cause {
	var out invoke.Cause
	for _, h := range headers {
		switch h.Key {
		case HeaderFunction:
			t, fn, ok := strings.Cut(string(h.Value), "/")
			if !ok || t != tenant {
				return invoke.Cause{}
			}
			out.Function = fn
		case HeaderStarted:
			if ms, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
				out.Started = time.UnixMilli(ms)
			}
		}
	}
	if out.Function == "" {
		return invoke.Cause{}
	}
	return out
}
