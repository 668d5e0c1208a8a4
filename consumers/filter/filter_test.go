package filter

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func event(t *testing.T, s string) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMatch(t *testing.T) {
	ev := `{"value":{"kind":"order","amount":42.5,"region":"EU-West","tags":["a","b"],"n":null,
		"customer":{"tier":"gold","id":"c-17"}},"key":"user-1","headers":{"source":"web"}}`
	for _, c := range []struct {
		pattern string
		want    bool
	}{
		{`{"value":{"kind":["order"]}}`, true},
		{`{"value":{"kind":["refund"]}}`, false},
		{`{"value":{"kind":["refund","order"]}}`, true},
		{`{"value":{"amount":[42.5]}}`, true},
		{`{"value":{"amount":[{"numeric":[">",40,"<=",50]}]}}`, true},
		{`{"value":{"amount":[{"numeric":["<",40]}]}}`, false},
		{`{"value":{"amount":[{"numeric":["=",42.50]}]}}`, true},
		{`{"value":{"region":[{"prefix":"EU-"}]}}`, true},
		{`{"value":{"region":[{"suffix":"-East"}]}}`, false},
		{`{"value":{"region":[{"equals-ignore-case":"eu-west"}]}}`, true},
		{`{"value":{"kind":[{"anything-but":["refund"]}]}}`, true},
		{`{"value":{"kind":[{"anything-but":"order"}]}}`, false},
		{`{"value":{"region":[{"anything-but":{"prefix":"US"}}]}}`, true},
		{`{"value":{"missing":[{"exists":false}]}}`, true},
		{`{"value":{"missing":[{"exists":true}]}}`, false},
		{`{"value":{"kind":[{"exists":true}]}}`, true},
		{`{"value":{"n":[null]}}`, true},
		{`{"value":{"tags":["b"]}}`, true},
		{`{"value":{"tags":["c"]}}`, false},
		{`{"value":{"customer":{"tier":["gold"]}}}`, true},
		{`{"value":{"customer":{"tier":["gold"],"id":["x"]}}}`, false},
		{`{"key":[{"prefix":"user-"}],"headers":{"source":["web"]}}`, true},
		{`{"headers":{"source":["batch"]}}`, false},
		{`{"value":{"$or":[{"kind":["refund"]},{"amount":[{"numeric":[">",40]}]}]}}`, true},
		{`{"value":{"$or":[{"kind":["refund"]},{"amount":[{"numeric":["<",1]}]}]}}`, false},
		{`{"value":{"kind":["order"],"region":["US"]}}`, false},
	} {
		p, err := Compile(c.pattern)
		if err != nil {
			t.Errorf("%s: %v", c.pattern, err)
			continue
		}
		if got := p.Match(event(t, ev)); got != c.want {
			t.Errorf("%s: %v, want %v", c.pattern, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, bad := range []string{`[]`, `"x"`, `{"a":"b"}`, `{"a":[]}`, `{"a":[{"prefix":1}]}`, `{"a":[{"numeric":[">"]}]}`,
		`{"a":[{"numeric":["~",1]}]}`, `{"a":[{"bogus":1}]}`, `{"$or":[{"a":["x"]}]}`, `{"a":[{"exists":"yes"}]}`, `{`} {
		if _, err := Compile(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", bad, err)
		}
	}
}
