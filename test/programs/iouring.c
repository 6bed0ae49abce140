// Creates an io_uring instance with the raw io_uring_setup syscall (425), keeps the fd, sleeps.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
	unsigned char params[120]; /* struct io_uring_params */
	memset(params, 0, sizeof(params));
	long fd = syscall(425, 4, params);
	if (fd < 0) { perror("io_uring_setup"); return 1; }
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
