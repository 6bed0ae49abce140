// Connects a unix socket to PATH and keeps it. "serve" binds PATH (a datagram socket with "dgram") instead.
// Usage: unixpeer PATH [stream|dgram] [connect|serve]
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 2) { fprintf(stderr, "usage: unixpeer PATH [stream|dgram] [connect|serve]\n"); return 2; }
	int dgram = argc > 2 && strcmp(argv[2], "dgram") == 0;
	int serve = argc > 3 && strcmp(argv[3], "serve") == 0;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strncpy(a.sun_path, argv[1], sizeof(a.sun_path) - 1);
	int s = socket(AF_UNIX, dgram ? SOCK_DGRAM : SOCK_STREAM, 0);
	if (s < 0) { perror("socket"); return 1; }
	if (serve) {
		unlink(argv[1]);
		if (bind(s, (struct sockaddr *)&a, sizeof(a))) { perror("bind"); return 1; }
		if (!dgram && listen(s, 8)) { perror("listen"); return 1; }
	} else {
		for (int i = 0; connect(s, (struct sockaddr *)&a, sizeof(a)); i++) {
			if (i > 100) { perror("connect"); return 1; }
			usleep(50000);
		}
	}
	int r = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (r >= 0) close(r);
	if (serve && !dgram) {
		int keep[16];
		for (int n = 0; n < 16; n++) keep[n] = accept(s, NULL, NULL);
		(void)keep;
	}
	for (;;) pause();
}
