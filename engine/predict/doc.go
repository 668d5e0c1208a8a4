// Package predict keeps task profiles and loads code ahead of the
// invocations they predict (predictive pre-warming).
//
// A Predictor wraps the scheduler. From what runs through it, it learns,
// per tenant, which function follows which: an invocation whose Cause names
// another function of the tenant (a record that function's binding wrote to
// its result topic, or an API invoke passing on the trace id the caller
// was given) counts one follow of that pair, with the delay between the two
// handler starts. Counts go to Redis in batches (Store) and decay with a
// half-life, so old habits fade.
//
// When a function starts, each pair from it that is likely enough
// (MinFollows, MinProbability) and whose loads ahead are used
// (MinHitRatio) has its second function loaded on an instance of the
// tenant (scheduler.LoadAhead) unless enough idle instances already hold
// it (one per running invocation of the first, at most one beyond the
// second's own running ones), MaxLoading per replica at a time. The loaded container's first invocation
// reports the load's tag wherever it runs, which counts a hit; predictions
// never used show as predictions without hits.
package predict
