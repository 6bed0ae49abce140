/* tcpself <ipv4> [port]: an established TCP connection from the container to itself over its own (non-loopback)
 * address, both ends held, then sleeps. Writes /tmp/ready once connected. Restoring it needs that address. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "tcpconn.h"

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	int port = argc > 2 ? atoi(argv[2]) : 7100;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) return 2;
	int l, c;
	if (tcp_listen_connect(&a, &l, &c)) return 1;
	int s = accept(l, NULL, NULL);
	if (s < 0) { perror("accept"); return 1; }
	if (write(c, "x", 1) != 1) return 1;
	int fd = open("/tmp/ready", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) close(fd);
	for (;;) pause();
}
