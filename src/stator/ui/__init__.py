"""Pages people look at: the instance pages under ``/-/ui/`` (:class:`InstancePages`)."""

from stator.ui.instance import InstancePages

__all__ = ["InstancePages"]
