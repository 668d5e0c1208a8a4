package redisconn

import "testing"

func TestOptions(t *testing.T) {
	o, err := Options("127.0.0.1:6390", "")
	if err != nil || o.Addr != "127.0.0.1:6390" || o.TLSConfig != nil {
		t.Fatalf("plain = %+v, %v", o, err)
	}
	o, err = Options("rediss://:s3cret@redis.example:6380/2", "")
	if err != nil || o.TLSConfig == nil || o.Password != "s3cret" || o.DB != 2 || o.Addr != "redis.example:6380" {
		t.Fatalf("rediss = %+v, %v", o, err)
	}
	if _, err := Options("127.0.0.1:6390", "/ca.pem"); err == nil {
		t.Fatal("a CA file without TLS was accepted")
	}
	if got := Redacted("rediss://user:s3cret@h:1"); got != "rediss://***@h:1" {
		t.Fatalf("Redacted = %q", got)
	}
}
