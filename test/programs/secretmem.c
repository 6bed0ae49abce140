// memfd_secret (syscall 447): creates a secret memory area, maps and touches it, keeps the fd, sleeps.
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
	long fd = syscall(447, 0);
	if (fd < 0) { perror("memfd_secret"); return 1; }
	if (ftruncate(fd, 4096)) { perror("ftruncate"); return 1; }
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); return 1; }
	p[0] = 42;
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
