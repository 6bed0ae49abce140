// Opens a userfaultfd (syscall 323, user-mode faults only, so no privilege is needed), keeps it, sleeps.
// CRIU has no dumper for userfaultfd fds.
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UFFD_USER_MODE_ONLY 1

int main(void) {
	long fd = syscall(323, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0) { perror("userfaultfd"); return 1; }
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
