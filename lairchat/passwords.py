# -*- test-case-name: tests.test_passwords -*-
"""
Password hashing with argon2id, off the reactor thread.

Hashing is deliberately slow, so every hash and every verification runs in
a thread pool; the reactor keeps serving other clients meanwhile.
"""

from typing import Any

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet.threads import deferToThreadPool


class Passwords:
    """
    Hash and verify passwords in a thread pool.

    @ivar hasher: the argon2 L{PasswordHasher} (RFC 9106's low-memory
        profile by default).
    """

    def __init__(self, reactor: Any, threadpool: Any = None, hasher: PasswordHasher | None = None) -> None:
        self._reactor = reactor
        self._threadpool = threadpool if threadpool is not None else reactor.getThreadPool()
        self.hasher = hasher or PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
        self._decoy: str | None = None

    async def hash(self, password: str) -> str:
        """The argon2id hash of a password."""
        return await deferToThreadPool(self._reactor, self._threadpool, self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """
        Whether C{password} matches C{password_hash}.  With no hash (an
        unknown user) a decoy hash is verified instead, so the answer takes
        as long either way and never tells whether the user exists.
        """
        if password_hash is None:
            if self._decoy is None:
                self._decoy = await self.hash("decoy password 0")
            await deferToThreadPool(self._reactor, self._threadpool, self._check, self._decoy, password)
            return False
        return await deferToThreadPool(self._reactor, self._threadpool, self._check, password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        """Verify in the calling (pool) thread."""
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
