// Package readiness holds the select and poll models of "cport models":
// echo servers written the way the tutorial describes the readiness model,
// without cport. One goroutine, locked to its OS thread, owns a non-blocking
// listening socket and every connection; it blocks in select(2) or poll(2)
// over all of them, then accepts, reads and writes back whatever is ready.
//
// The two servers share everything but the wait call (the waiter
// interface): selectWaiter rebuilds FD_SETSIZE-bit descriptor sets,
// pollWaiter hands the kernel an array of pollfd. Either way a wake-up costs
// O(n) in the descriptors watched, in the kernel and in the loop that looks
// for the ready ones: that is the claim the models experiment measures.
//
// The servers run on Linux only; elsewhere Serve returns an error naming
// the model.
package readiness
