// Package lowprio lowers the priority of a process whose whole work is
// background work, such as a compile child, so that it yields the CPU to
// the server that started it. On Linux its threads run at nice Nice;
// elsewhere nothing changes.
package lowprio

// Nice is the nice value of lowered threads: a thread at nice 10 gets about
// a tenth of the CPU a nice-0 thread competing with it gets.
const Nice = 10
