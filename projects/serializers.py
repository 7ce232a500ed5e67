"""GET /projects/{id}'s contract, rendered by the view and read by the schema generator."""

from __future__ import annotations

from rest_framework import serializers as s

from labeling.serializers import LabelSerializer
from projects.models import Project
from training.serializers import ModelRefSerializer


class ProjectSamplesSerializer(s.Serializer):
    total = s.IntegerField()
    labeled = s.IntegerField()


class ProjectSerializer(s.Serializer):
    id = s.UUIDField()
    name = s.CharField()
    task = s.ChoiceField(choices=Project.Task.choices)
    labels = LabelSerializer(many=True)
    samples = ProjectSamplesSerializer()
    deployed_model = ModelRefSerializer(allow_null=True)
