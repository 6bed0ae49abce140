// Opens a file, writes N bytes, unlinks it and keeps it open: a deleted-but-open ("ghost") file. Sleeps.
// Usage: ghost [bytes] [path]
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 4 * 1024 * 1024;
	const char *path = argc > 2 ? argv[2] : "/tmp/ghost.dat";
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) { perror("open"); return 1; }
	char buf[65536];
	memset(buf, 'g', sizeof(buf));
	for (long done = 0; done < n;) {
		long k = n - done < (long)sizeof(buf) ? n - done : (long)sizeof(buf);
		if (write(fd, buf, k) != k) { perror("write"); return 1; }
		done += k;
	}
	fsync(fd);
	if (unlink(path)) { perror("unlink"); return 1; }
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
