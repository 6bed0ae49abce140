/* pause: the sandbox process of every pod on the test bed's cluster (its "pause" image; no registry is
 * reachable here). It holds the pod's namespaces, reaps any child reparented to it (it is PID 1 when the pod
 * shares its PID namespace), and exits 0 on SIGTERM or SIGINT. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig) {
	(void)sig;
	stop = 1;
}

static void on_child(int sig) {
	(void)sig;
}

int main(void) {
	sigset_t block, wait_mask;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGCHLD);
	/* Blocked outside sigsuspend, so a signal between the checks below and the wait is never lost. */
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGCHLD);

	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);

	while (!stop) {
		sigsuspend(&wait_mask);
		while (waitpid(-1, NULL, WNOHANG) > 0) {
		}
	}
	return 0;
}
