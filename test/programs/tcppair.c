// Holds an established loopback TCP connection (both ends), then sleeps. Writes /tmp/ready when set up.
// With "noaccept" the listener never accepts: the connection stays in flight in its accept queue.
// Usage: tcppair [port] [noaccept]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void ready(void) {
	int fd = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
	int port = argc > 1 ? atoi(argv[1]) : 7001;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1)) { perror("listen"); return 1; }
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a))) { perror("connect"); return 1; }
	if (!(argc > 2 && strcmp(argv[2], "noaccept") == 0)) {
		int s = accept(l, NULL, NULL);
		if (s < 0) { perror("accept"); return 1; }
	}
	ready();
	for (;;) pause();
}
