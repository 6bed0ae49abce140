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
#include "tcpconn.h"

static void ready(void) {
	int fd = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
	int port = argc > 1 ? atoi(argv[1]) : 7001;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int l, c;
	if (tcp_listen_connect(&a, &l, &c)) return 1;
	if (!(argc > 2 && strcmp(argv[2], "noaccept") == 0)) {
		int s = accept(l, NULL, NULL);
		if (s < 0) { perror("accept"); return 1; }
	}
	ready();
	for (;;) pause();
}
