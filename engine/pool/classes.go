package pool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Standard fixed resource classes, shared by all tenants: memory in MB.
var StandardClasses = []int64{128, 256, 512, 1024}

// ClassFor names the fixed class that holds memoryMB: the smallest standard
// class at least that large, e.g. "m256" for 200.
func ClassFor(memoryMB int64) (string, error) {
	for _, c := range StandardClasses {
		if memoryMB <= c {
			return ClassName(c), nil
		}
	}
	return "", fmt.Errorf("pool: memory %d MB is above the largest class (%d MB)", memoryMB, StandardClasses[len(StandardClasses)-1])
}

// ClassName is the name of the fixed class of memoryMB megabytes.
func ClassName(memoryMB int64) string { return "m" + strconv.FormatInt(memoryMB, 10) }

// ClassMemory parses a class name made by ClassName.
func ClassMemory(class string) (int64, error) {
	mb, err := strconv.ParseInt(strings.TrimPrefix(class, "m"), 10, 64)
	if err != nil || !strings.HasPrefix(class, "m") || mb <= 0 {
		return 0, fmt.Errorf("pool: bad class name %q", class)
	}
	return mb, nil
}

func sortClasses(cs []string) {
	slices.SortFunc(cs, func(a, b string) int {
		ma, _ := ClassMemory(a)
		mb, _ := ClassMemory(b)
		if ma != mb {
			return int(ma - mb)
		}
		return strings.Compare(a, b)
	})
}

// VersionKey names a function version for the hot sets: tenant, function and
// version, joined with '/' (names may not contain '/').
func VersionKey(tenant, function, version string) string {
	return tenant + "/" + function + "/" + version
}
