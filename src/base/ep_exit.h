#ifndef EP_EXIT_H
#define EP_EXIT_H

/*
 * A process-wide note that the process must end with _exit(), not exit().
 *
 * A component that gave up waiting for a thread it could not stop (a library
 * call that did not return, such as leaving a Kafka consumer group) leaves that
 * thread running with memory it still uses. exit() would run atexit handlers and
 * library destructors under it; _exit() ends the process at once, which is what
 * the stuck thread needs. main() looks at the note after tearing everything down.
 */

/** Records that a thread was left running; why is logged by the caller. Thread-safe. */
void ep_exit_fast_request(void);

/** 1 once ep_exit_fast_request() was called, else 0. Thread-safe. */
int ep_exit_fast_requested(void);

#endif /* EP_EXIT_H */
