// Forks a child that sleeps and attaches to it with PTRACE_SEIZE; both then sleep. The child is ptraced.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
	pid_t c = fork();
	if (c < 0) { perror("fork"); return 1; }
	if (c == 0) { for (;;) pause(); }
	if (ptrace(PTRACE_SEIZE, c, 0, 0)) { perror("ptrace"); kill(c, SIGKILL); return 1; }
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) {
		int st;
		if (waitpid(c, &st, 0) < 0) pause();
		else if (WIFSTOPPED(st)) ptrace(PTRACE_CONT, c, 0, 0);
	}
}
