/* nonlazy <kind> [KiB]: holds [KiB] (default 1024) of memory that CRIU never treats as lazy, every page written
 * with non-zero bytes, then creates /tmp/ready and sleeps. Kinds:
 *   sysv      a SysV shm segment (shmget + shmat), attached
 *   sysvdt    a SysV shm segment, written and then detached (it stays in the IPC namespace)
 *   mlock     a private anonymous region, mlock'ed
 *   shared    a MAP_SHARED|MAP_ANONYMOUS region
 *   memfd     a memfd, mapped MAP_SHARED (its fd stays open)
 *   devshm    a file in /dev/shm, mapped MAP_SHARED
 *   filepriv  a file in /tmp, mapped MAP_PRIVATE and written (copy-on-write pages)
 *   anon      a private anonymous region (lazy: the control)
 * Exit codes: 2 bad arguments, 3 the allocation or mapping failed, 4 mlock failed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

/* Pseudo-random bytes (xorshift64), so that the image set does not compress away. */
static void fill(unsigned char *p, size_t len) {
	unsigned long long x = 0x9e3779b97f4a7c15ULL;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x | 1;
	}
}

static unsigned char *file_map(int fd, size_t len, int flags) {
	if (fd < 0 || ftruncate(fd, (off_t)len) != 0) return MAP_FAILED;
	return mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
}

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	const char *kind = argv[1];
	size_t len = (argc > 2 ? strtoul(argv[2], NULL, 10) : 1024) << 10;
	if (len == 0) return 2;
	unsigned char *p = MAP_FAILED;
	if (strcmp(kind, "sysv") == 0 || strcmp(kind, "sysvdt") == 0) {
		int id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);
		if (id < 0) return 3;
		p = shmat(id, NULL, 0);
		if (p == (void *)-1) return 3;
		fill(p, len);
		if (kind[4] == 'd') {
			if (shmdt(p) != 0) return 3;
			p = NULL;
		}
	} else if (strcmp(kind, "mlock") == 0 || strcmp(kind, "anon") == 0) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) return 3;
		fill(p, len);
		if (kind[0] == 'm' && mlock(p, len) != 0) return 4;
	} else if (strcmp(kind, "shared") == 0) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) return 3;
		fill(p, len);
	} else if (strcmp(kind, "memfd") == 0) {
		p = file_map(memfd_create("nonlazy", 0), len, MAP_SHARED);
		if (p == MAP_FAILED) return 3;
		fill(p, len);
	} else if (strcmp(kind, "devshm") == 0) {
		p = file_map(open("/dev/shm/nonlazy", O_RDWR | O_CREAT | O_TRUNC, 0600), len, MAP_SHARED);
		if (p == MAP_FAILED) return 3;
		fill(p, len);
	} else if (strcmp(kind, "filepriv") == 0) {
		int fd = open("/tmp/nonlazy.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0) return 3;
		unsigned char *zero = calloc(1, len);
		if (zero == NULL || write(fd, zero, len) != (ssize_t)len) return 3;
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) return 3;
		fill(p, len);
	} else {
		return 2;
	}
	int r = open("/tmp/ready", O_WRONLY | O_CREAT, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
