// Package filter matches events against Lambda's event-filtering patterns
// (the EventBridge pattern language): a JSON object whose keys name fields
// of the event and whose leaves are arrays of conditions.
//
// In a pattern object every key must match (AND); "$or" holds a list of
// patterns of which one must match. A leaf array matches if any of its
// conditions does: a literal (string, number, boolean or null) equal to
// the field, or one of
//
//	{"prefix": "abc"}          {"suffix": ".png"}
//	{"equals-ignore-case": "x"}
//	{"anything-but": ["a", "b"]} / {"anything-but": 5} / {"anything-but": {"prefix": "x"}}
//	{"numeric": [">", 0, "<=", 100]}
//	{"exists": true} / {"exists": false}
//
// A field whose value is an array matches if any element does. Numbers are
// compared as numbers (1 and 1.0 are equal).
package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrInvalid is wrapped by every Compile error.
var ErrInvalid = errors.New("invalid filter pattern")

// Pattern is a compiled filter.
type Pattern struct{ root *object }

type object struct {
	fields map[string]node // AND
	ors    [][]*object     // each: one of them must match
}

// node is either a nested object or a leaf (list of conditions).
type node struct {
	obj  *object
	leaf []condition
}

type condition interface {
	match(v any, present bool) bool
}

// Compile parses pattern.
func Compile(pattern string) (*Pattern, error) {
	var raw any
	dec := json.NewDecoder(strings.NewReader(pattern))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a pattern is a JSON object", ErrInvalid)
	}
	o, err := compileObject(m, "")
	if err != nil {
		return nil, err
	}
	return &Pattern{root: o}, nil
}

func compileObject(m map[string]any, path string) (*object, error) {
	o := &object{fields: map[string]node{}}
	for k, v := range m {
		p := path + "." + k
		if k == "$or" {
			list, ok := v.([]any)
			if !ok || len(list) < 2 {
				return nil, fmt.Errorf("%w: %s must be a list of at least two patterns", ErrInvalid, p)
			}
			var alts []*object
			for _, alt := range list {
				am, ok := alt.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%w: %s holds a non-object", ErrInvalid, p)
				}
				ao, err := compileObject(am, path)
				if err != nil {
					return nil, err
				}
				alts = append(alts, ao)
			}
			o.ors = append(o.ors, alts)
			continue
		}
		switch t := v.(type) {
		case map[string]any:
			sub, err := compileObject(t, p)
			if err != nil {
				return nil, err
			}
			o.fields[k] = node{obj: sub}
		case []any:
			if len(t) == 0 {
				return nil, fmt.Errorf("%w: %s is an empty list", ErrInvalid, p)
			}
			var conds []condition
			for _, c := range t {
				cond, err := compileCondition(c, p)
				if err != nil {
					return nil, err
				}
				conds = append(conds, cond)
			}
			o.fields[k] = node{leaf: conds}
		default:
			return nil, fmt.Errorf("%w: %s must be an object or a list of conditions", ErrInvalid, p)
		}
	}
	return o, nil
}

func compileCondition(c any, path string) (condition, error) {
	m, ok := c.(map[string]any)
	if !ok {
		lit, err := literalOf(c, path)
		if err != nil {
			return nil, err
		}
		return equals{lit}, nil
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("%w: %s: a condition object has exactly one operator", ErrInvalid, path)
	}
	for op, arg := range m {
		switch op {
		case "prefix", "suffix", "equals-ignore-case":
			s, ok := arg.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s: %s takes a string", ErrInvalid, path, op)
			}
			return stringOp{op: op, s: s}, nil
		case "exists":
			b, ok := arg.(bool)
			if !ok {
				return nil, fmt.Errorf("%w: %s: exists takes true or false", ErrInvalid, path)
			}
			return exists(b), nil
		case "numeric":
			return compileNumeric(arg, path)
		case "anything-but":
			return compileAnythingBut(arg, path)
		default:
			return nil, fmt.Errorf("%w: %s: unknown operator %q", ErrInvalid, path, op)
		}
	}
	panic("unreachable")
}

// literal is a comparable JSON scalar: string, float64, bool or nil.
type literal struct{ v any }

func literalOf(c any, path string) (literal, error) {
	switch t := c.(type) {
	case string, bool, nil:
		return literal{t}, nil
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return literal{}, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
		}
		return literal{f}, nil
	}
	return literal{}, fmt.Errorf("%w: %s: %v is not a string, number, boolean or null", ErrInvalid, path, c)
}

func (l literal) equal(v any) bool {
	switch t := v.(type) {
	case json.Number:
		f, err := t.Float64()
		lf, ok := l.v.(float64)
		return err == nil && ok && f == lf
	case float64:
		lf, ok := l.v.(float64)
		return ok && t == lf
	}
	return l.v == v
}

type equals struct{ lit literal }

func (e equals) match(v any, present bool) bool { return present && e.lit.equal(v) }

type stringOp struct{ op, s string }

func (o stringOp) match(v any, present bool) bool {
	s, ok := v.(string)
	if !present || !ok {
		return false
	}
	switch o.op {
	case "prefix":
		return strings.HasPrefix(s, o.s)
	case "suffix":
		return strings.HasSuffix(s, o.s)
	default:
		return strings.EqualFold(s, o.s)
	}
}

type exists bool

func (e exists) match(_ any, present bool) bool { return present == bool(e) }

type numeric struct {
	ops  []string
	vals []float64
}

func compileNumeric(arg any, path string) (condition, error) {
	list, ok := arg.([]any)
	if !ok || len(list) == 0 || len(list)%2 != 0 || len(list) > 4 {
		return nil, fmt.Errorf("%w: %s: numeric takes [op, n] or [op, n, op, n]", ErrInvalid, path)
	}
	var n numeric
	for i := 0; i < len(list); i += 2 {
		op, ok := list[i].(string)
		num, ok2 := list[i+1].(json.Number)
		if !ok || !ok2 {
			return nil, fmt.Errorf("%w: %s: numeric takes operator strings and numbers", ErrInvalid, path)
		}
		switch op {
		case "=", "<", "<=", ">", ">=":
		default:
			return nil, fmt.Errorf("%w: %s: numeric operator %q", ErrInvalid, path, op)
		}
		f, err := num.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: %s: number %v", ErrInvalid, path, num)
		}
		n.ops, n.vals = append(n.ops, op), append(n.vals, f)
	}
	return n, nil
}

func (n numeric) match(v any, present bool) bool {
	var f float64
	switch t := v.(type) {
	case json.Number:
		var err error
		if f, err = t.Float64(); err != nil {
			return false
		}
	case float64:
		f = t
	default:
		return false
	}
	if !present {
		return false
	}
	for i, op := range n.ops {
		x := n.vals[i]
		ok := false
		switch op {
		case "=":
			ok = f == x
		case "<":
			ok = f < x
		case "<=":
			ok = f <= x
		case ">":
			ok = f > x
		case ">=":
			ok = f >= x
		}
		if !ok {
			return false
		}
	}
	return true
}

type anythingBut struct {
	lits   []literal
	prefix *string
}

func compileAnythingBut(arg any, path string) (condition, error) {
	var a anythingBut
	switch t := arg.(type) {
	case []any:
		for _, c := range t {
			lit, err := literalOf(c, path)
			if err != nil {
				return nil, err
			}
			a.lits = append(a.lits, lit)
		}
	case map[string]any:
		p, ok := t["prefix"].(string)
		if !ok || len(t) != 1 {
			return nil, fmt.Errorf("%w: %s: anything-but takes values or {\"prefix\": ...}", ErrInvalid, path)
		}
		a.prefix = &p
	default:
		lit, err := literalOf(t, path)
		if err != nil {
			return nil, err
		}
		a.lits = []literal{lit}
	}
	return a, nil
}

func (a anythingBut) match(v any, present bool) bool {
	if !present {
		return false
	}
	if a.prefix != nil {
		s, ok := v.(string)
		return ok && !strings.HasPrefix(s, *a.prefix)
	}
	for _, l := range a.lits {
		if l.equal(v) {
			return false
		}
	}
	return true
}

// Match reports whether event (as decoded from JSON with UseNumber, or
// built of maps, slices, strings, json.Number/float64, bools and nil)
// matches the pattern.
func (p *Pattern) Match(event any) bool { return p.root.match(event) }

func (o *object) match(v any) bool {
	m, _ := v.(map[string]any)
	for k, n := range o.fields {
		fv, present := m[k]
		if !n.match(fv, present) {
			return false
		}
	}
	for _, alts := range o.ors {
		any := false
		for _, a := range alts {
			if a.match(v) {
				any = true
				break
			}
		}
		if !any {
			return false
		}
	}
	return true
}

func (n node) match(v any, present bool) bool {
	if n.obj != nil {
		if list, ok := v.([]any); ok {
			for _, e := range list {
				if n.obj.match(e) {
					return true
				}
			}
			return false
		}
		return present && n.obj.match(v)
	}
	if list, ok := v.([]any); ok && present {
		for _, c := range n.leaf {
			if _, isExists := c.(exists); isExists {
				if c.match(v, true) {
					return true
				}
				continue
			}
			for _, e := range list {
				if c.match(e, true) {
					return true
				}
			}
		}
		return false
	}
	for _, c := range n.leaf {
		if c.match(v, present) {
			return true
		}
	}
	return false
}
