// Opens a device file (retrying while the devices cgroup denies it) and keeps it open. With "mknod MAJ MIN" it first creates /tmp/devnode (char device).
// Usage: devfile PATH | devfile mknod MAJOR MINOR
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int main(int argc, char **argv) {
	const char *path = argc > 1 ? argv[1] : "/dev/null";
	if (strcmp(path, "mknod") == 0 && argc > 3) {
		path = "/tmp/devnode";
		unlink(path);
		if (mknod(path, S_IFCHR | 0600, makedev(atoi(argv[2]), atoi(argv[3])))) { perror("mknod"); return 1; }
	}
	/* retried for up to 20 s: a test may allow the device in the devices cgroup after the start */
	int fd = -1;
	for (int i = 0; i < 400 && fd < 0; i++) {
		fd = open(path, O_RDONLY);
		if (fd < 0) usleep(50000);
	}
	if (fd < 0) { perror("open"); return 1; }
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	for (;;) pause();
}
