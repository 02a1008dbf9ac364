/* Small file helpers: mkdir -p, atomic replace, whole-file read. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fileutil.h"

static int mkdir_one(const char *dir, mode_t mode)
{
	struct stat st;

	if (mkdir(dir, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(dir, &st) != 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int pilot_mkdirs(const char *dir, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);
	int rc;

	if (len == 0)
		return -EINVAL;
	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, dir, len + 1);
	/* Create each prefix ending before a '/', then the whole path. */
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		rc = mkdir_one(buf, mode);
		*p = '/';
		if (rc < 0)
			return rc;
	}
	return mkdir_one(buf, mode);
}

/* Split path into its directory ("." when there is none) and base name. */
static int split_path(const char *path, char *dir, size_t dircap, const char **base)
{
	const char *slash = strrchr(path, '/');
	size_t dlen;

	*base = slash ? slash + 1 : path;
	if (**base == '\0')
		return -EISDIR;
	if (!slash) {
		snprintf(dir, dircap, ".");
		return 0;
	}
	dlen = slash == path ? 1 : (size_t)(slash - path);
	if (dlen >= dircap)
		return -ENAMETOOLONG;
	memcpy(dir, path, dlen);
	dir[dlen] = '\0';
	return 0;
}

int pilot_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Write the temp file completely and durably before it may replace path. */
static int write_temp(int fd, const void *data, size_t len, mode_t mode)
{
	int rc;

	/* fchmod, not the creation mode: mkstemp always uses 0600 and the umask must
	 * not widen or narrow what the caller asked for. */
	if (fchmod(fd, mode) != 0)
		return -errno;
	rc = pilot_write_all(fd, data, len);
	if (rc < 0)
		return rc;
	return fsync(fd) == 0 ? 0 : -errno;
}

int pilot_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	const char *base;
	int fd = -1, rc;

	rc = split_path(path, dir, sizeof(dir), &base);
	if (rc < 0)
		return rc;
	rc = pilot_mkdirs(dir, 0700);
	if (rc < 0)
		return rc;
	/* Same directory, so rename() is atomic; a dot name keeps it out of listings. */
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmpXXXXXX", dir, base) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = write_temp(fd, data, len, mode);
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0)
		goto cleanup;
	/* The rename itself is only durable once the directory entry is synced. */
	return fsync_dir(dir);
cleanup:
	unlink(tmp);
	return rc;
}

int pilot_rename_durable(const char *from, const char *to)
{
	char dir[PATH_MAX];
	const char *base;
	int rc = split_path(to, dir, sizeof(dir), &base);

	if (rc < 0)
		return rc;
	if (rename(from, to) != 0)
		return -errno;
	return fsync_dir(dir);
}

/* Double the buffer, but never beyond limit bytes. */
static int grow(char **buf, size_t *cap, size_t limit)
{
	size_t ncap = *cap ? *cap * 2 : 4096;
	char *nb;

	if (ncap > limit)
		ncap = limit;
	nb = realloc(*buf, ncap);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

static int read_fd(int fd, size_t maxlen, char **out, size_t *outlen)
{
	/* maxlen bytes, one more to tell "exactly maxlen" from "too big", and the NUL. */
	size_t limit = maxlen + 2, cap = 0, len = 0;
	char *buf = NULL;
	ssize_t n;
	int rc;

	for (;;) {
		if (len + 1 >= cap) {
			rc = grow(&buf, &cap, limit);
			if (rc < 0)
				goto cleanup;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len > maxlen) {
			rc = -EFBIG;
			goto cleanup;
		}
	}
	if (n < 0) {
		rc = -errno;
		goto cleanup;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
cleanup:
	/* Callers read key files with this; leave nothing of them in freed memory. */
	if (buf)
		explicit_bzero(buf, len);
	free(buf);
	return rc;
}

int pilot_read_file(const char *path, size_t maxlen, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t dummy;
	int rc;

	if (fd < 0)
		return -errno;
	rc = read_fd(fd, maxlen, out, len ? len : &dummy);
	close(fd);
	return rc;
}
