"""The social graph's warm copy in Redis, and the visibility rule over it in Lua.

Warm reads (app.reads, the feed) answer without the database, so what
app.social.visibility asks of the tables is kept in Redis too:

  following:{user}  whom the user actively follows (FeedManager builds and drops it)
  rel:{user}        a hash of the user's other relations, by the other user's id:
                    "p" they asked to follow them, "b" they blocked them, "B"
                    they are blocked by them ("bB" both); the field "0" marks it built
  private:{user}    "1" for a private account, "0" for a public one

Writers drop rel: and private: after their commit and stamp their clocks
(app/platform/clocks.py); a reader that misses rebuilds them from the
database, and a rebuild that raced a commit is refused. A missed drop would
show a blocked viewer a public account's photos, or a private account's to
everyone, until the TTL: so the drops are outbox rows (must_happen), not best effort.

MAY_SEE_LUA is can_view_media in Lua; tests/test_visibility_everywhere.py runs
every read over the same cases.
"""
from __future__ import annotations

from string import Template

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.platform import keys
from app.platform.clocks import STAMP_LUA, Clocks
from app.platform.keys import private_clock_key, private_key, relations_clock_key, relations_key
from models import Block, Follow, User

RELATIONS_TTL = 3600
PRIVATE_TTL = 3600
BUILT = "0"
REQUESTED, BLOCKED, BLOCKED_BY = "p", "b", "B"

# Needs held() (app.feeds.rendered.WARM_LUA) before it. may_see(uid, owners):
# a table of booleans, one per owner id (strings), or nil and what was cold.
MAY_SEE_LUA = Template("""
local function relations_built(uid)
  if redis.call('SISMEMBER', '${FOLLOWING}' .. uid, '0') == 0 then return false, 'following' end
  if redis.call('HEXISTS', '${RELATIONS}' .. uid, '0') == 0 then return false, 'relations' end
  return true
end

local function may_see(uid, owners)
  local built, why = relations_built(uid)
  if not built then return nil, why end
  if #owners == 0 then return {} end
  local pkeys = {}
  for i, owner in ipairs(owners) do pkeys[i] = '${PRIVATE}' .. owner end
  local relations = redis.call('HMGET', '${RELATIONS}' .. uid, unpack(owners))
  local private = redis.call('MGET', unpack(pkeys))
  local followed = redis.call('SMISMEMBER', '${FOLLOWING}' .. uid, unpack(owners))
  local seen = {}
  for i, owner in ipairs(owners) do
    if owner == uid then seen[i] = true
    elseif relations[i] and string.find(relations[i], '[bB]') then seen[i] = false
    else
      local flag = private[i]
      if not flag or held(flag) then return nil, 'private' end
      seen[i] = flag == '0' or followed[i] == 1
    end
  end
  return seen
end
""").substitute(vars(keys))

# KEYS: the keys to drop, then as many clocks to stamp.
FORGET = STAMP_LUA + """
local half = #KEYS / 2
for i = 1, half do redis.call('DEL', KEYS[i]); stamp(KEYS[half + i]) end
"""


class SocialGraph:
    def __init__(self, redis, clocks: Clocks) -> None:
        self.redis = redis
        self.clocks = clocks
        self._forget = redis.register_script(FORGET)

    # -- readers that missed: rebuild from the database ------------------------
    def build_relations(self, session: Session, user_id: int, since: int) -> dict[str, str]:
        """rel:{user} from the tables, read after `since` (Redis µs); not stored if
        the user's relations changed after it."""
        relations: dict[str, str] = {BUILT: "1"}
        for other in session.scalars(select(Follow.followee_id).where(
                Follow.follower_id == user_id, Follow.status == "pending")):
            relations[str(other)] = REQUESTED
        for other in session.scalars(select(Block.blocked_id).where(Block.blocker_id == user_id)):
            relations[str(other)] = relations.get(str(other), "").replace(REQUESTED, "") + BLOCKED
        for other in session.scalars(select(Block.blocker_id).where(Block.blocked_id == user_id)):
            relations[str(other)] = relations.get(str(other), "") + BLOCKED_BY
        self.clocks.store_hash(relations_clock_key(user_id), relations_key(user_id), since, relations, RELATIONS_TTL)
        return relations

    def store_privacy(self, users: dict[int, bool], since: int) -> None:
        """private:{user} for these users (id: is_private, read after `since`)."""
        for user_id, is_private in users.items():
            self.clocks.store_string(private_clock_key(user_id), private_key(user_id), since,
                                     "1" if is_private else "0", PRIVATE_TTL)

    def warm(self, session: Session, viewer_id: int, owner_ids, since: int) -> None:
        """What MAY_SEE_LUA needs of the viewer and these owners, where Redis lacks it
        (following:{viewer} is the feed's: FeedManager.build_following)."""
        owner_ids = [i for i in dict.fromkeys(owner_ids) if i != viewer_id]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hexists(relations_key(viewer_id), BUILT)
        for owner_id in owner_ids:
            pipe.exists(private_key(owner_id))
        built, *have = pipe.execute()
        if not built:
            self.build_relations(session, viewer_id, since)
        missing = [i for i, has in zip(owner_ids, have) if not has]
        if missing:
            rows = session.execute(select(User.id, User.is_private).where(User.id.in_(missing)))
            self.store_privacy({row.id: row.is_private for row in rows}, since)

    # -- writers, after their commit -------------------------------------------
    def relations_changed(self, user_ids) -> None:
        """A follow request, block or unblock between these users was committed."""
        user_ids = list(dict.fromkeys(user_ids))
        if user_ids:
            self._forget(keys=[relations_key(i) for i in user_ids] + [relations_clock_key(i) for i in user_ids])

    def privacy_changed(self, user_id: int) -> None:
        """The account turned private or public (committed)."""
        self._forget(keys=[private_key(user_id), private_clock_key(user_id)])
