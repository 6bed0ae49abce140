/* memhog <MiB>: keeps <MiB> of dirty anonymous memory resident and counts. The counter lives in /tmp/counter
 * (8 bytes, rewritten in place every 10 ms, so the file never changes size), then /tmp/ready is created. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	size_t len = mib << 20;
	unsigned char *mem = NULL;
	if (len > 0) {
		mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED) return 1;
		for (size_t i = 0; i < len; i += 4096) mem[i] = (unsigned char)(i >> 12) | 1;
	}
	int fd = open("/tmp/counter", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) return 2;
	uint64_t n = 0;
	if (pwrite(fd, &n, sizeof(n), 0) != sizeof(n)) return 3;
	int r = open("/tmp/ready", O_WRONLY | O_CREAT, 0644);
	if (r >= 0) close(r);
	for (;;) {
		n++;
		if (mem != NULL) mem[(n * 4096) % len] ^= 2;
		if (pwrite(fd, &n, sizeof(n), 0) != sizeof(n)) return 4;
		usleep(10000);
	}
}
