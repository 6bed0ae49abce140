// Holds a lock on /tmp/locked: flock (default), posix (fcntl F_SETLK) or ofd (F_OFD_SETLK). Sleeps.
// Usage: flocker [flock|posix|ofd]
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int main(int argc, char **argv) {
	const char *kind = argc > 1 ? argv[1] : "flock";
	int fd = open("/tmp/locked", O_RDWR | O_CREAT, 0644);
	if (fd < 0) { perror("open"); return 1; }
	if (strcmp(kind, "flock") == 0) {
		if (flock(fd, LOCK_EX)) { perror("flock"); return 1; }
	} else {
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
		if (fcntl(fd, strcmp(kind, "ofd") == 0 ? F_OFD_SETLK : F_SETLK, &fl)) { perror("fcntl"); return 1; }
	}
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
