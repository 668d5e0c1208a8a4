package redisconn

import (
	"strings"
	"testing"
)

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

func TestSentinelURL(t *testing.T) {
	fo, err := failoverOptions("redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379,[::1]:26380/ember/3")
	if err != nil {
		t.Fatal(err)
	}
	if fo.MasterName != "ember" || fo.DB != 3 || fo.Password != "s3cret" || fo.TLSConfig != nil ||
		len(fo.SentinelAddrs) != 3 || fo.SentinelAddrs[2] != "[::1]:26380" || fo.SentinelPassword != "" {
		t.Fatalf("options %+v", fo)
	}
	fo, err = failoverOptions("rediss-sentinel://h:26379/m")
	if err != nil || fo.TLSConfig == nil || fo.MasterName != "m" || fo.DB != 0 {
		t.Fatalf("TLS = %+v, %v", fo, err)
	}
	for _, bad := range []string{
		"redis-sentinel://h:26379",      // no master
		"redis-sentinel://h:26379/",     // no master
		"redis-sentinel://h/m",          // no port
		"redis-sentinel://h:1,/m",       // empty host
		"redis-sentinel://h:1/m/x",      // bad db
		"redis-sentinel://h:1/m/1/2",    // too deep
		"redis-sentinel://u:p%zz@h:1/m", // bad escape
	} {
		if _, err := failoverOptions(bad); err == nil {
			t.Errorf("%s accepted", bad)
		} else if strings.Contains(err.Error(), "p%zz") {
			t.Errorf("%s: error shows the password: %v", bad, err)
		}
	}
	if _, err := Client("redis-sentinel://h:1/m", "/ca.pem"); err == nil {
		t.Fatal("a CA file without TLS was accepted")
	}
	if got := Redacted("redis-sentinel://:pw@a:1,b:2/m"); got != "redis-sentinel://***@a:1,b:2/m" {
		t.Fatalf("Redacted = %q", got)
	}
}
