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

// ClassMemory is the memory of a fixed class (one of StandardClasses);
// any other name is an error.
func ClassMemory(class string) (int64, error) {
	mb, err := strconv.ParseInt(strings.TrimPrefix(class, "m"), 10, 64)
	if err != nil || !strings.HasPrefix(class, "m") || !slices.Contains(StandardClasses, mb) {
		return 0, fmt.Errorf("pool: %q is not a class (the fixed classes are %s)", class, strings.Join(standardNames(), ", "))
	}
	return mb, nil
}

func standardNames() []string {
	out := make([]string, len(StandardClasses))
	for i, c := range StandardClasses {
		out[i] = ClassName(c)
	}
	return out
}

// FixedMilliCPU is the CPU an instance of a fixed class reserves on its
// host, in thousandths of a vCPU. Fixed classes share the host's CPU in
// proportion to memory (CFS shares, with a quota of memory/MBPerVCPU as a
// cap, as on Lambda): what they reserve is the floor an idle instance
// needs, so that the vCPU reserved by sub-pools is never overcommitted.
const FixedMilliCPU = 25

// FixedNeeds is what an instance of a fixed class reserves on its host;
// ok is false for a name that is not a fixed class.
func FixedNeeds(class string) (r Resources, ok bool) {
	mb, err := ClassMemory(class)
	if err != nil {
		return Resources{}, false
	}
	return Resources{MemoryMB: mb, MilliCPU: FixedMilliCPU}, true
}

// sortClasses orders fixed classes by memory, then sub-pools by name.
func sortClasses(cs []string) {
	slices.SortFunc(cs, func(a, b string) int {
		ma, errA := ClassMemory(a)
		mb, errB := ClassMemory(b)
		switch {
		case errA == nil && errB == nil:
			return int(ma - mb)
		case errA == nil:
			return -1
		case errB == nil:
			return 1
		}
		return strings.Compare(a, b)
	})
}

// VersionKey names a function version for the hot sets: tenant, function and
// version, joined with '/' (names may not contain '/').
func VersionKey(tenant, function, version string) string {
	return tenant + "/" + function + "/" + version
}
