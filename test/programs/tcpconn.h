/* tcpconn.h: shared by the TCP test programs. */
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

/* Listens at *a (backlog 1, SO_REUSEADDR) and connects to it from this same process: *lfd is the listener,
 * *cfd the connecting end. Returns 0, or 1 after perror. */
static int tcp_listen_connect(const struct sockaddr_in *a, int *lfd, int *cfd) {
	int one = 1;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0) { perror("socket"); return 1; }
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (const struct sockaddr *)a, sizeof(*a)) || listen(l, 1)) { perror("listen"); return 1; }
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (const struct sockaddr *)a, sizeof(*a))) { perror("connect"); return 1; }
	*lfd = l;
	*cfd = c;
	return 0;
}
