package initd

import "testing"

func TestSplitFunctionName(t *testing.T) {
	for _, tc := range []struct{ in, fn, q string }{
		{"orders", "orders", ""},
		{"orders:prod", "orders", "prod"},
		{"orders%3A3", "orders", "3"},
		{"arn:aws:lambda:local:alice:function:orders", "orders", ""},
		{"arn:aws:lambda:local:alice:function:orders:7", "orders", "7"},
		{"", "", ""},
	} {
		if fn, q := splitFunctionName(tc.in); fn != tc.fn || q != tc.q {
			t.Errorf("splitFunctionName(%q) = %q, %q; want %q, %q", tc.in, fn, q, tc.fn, tc.q)
		}
	}
}
