from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from projects.models import Project
from projects.roles import Role


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    task = forms.ChoiceField(choices=Project.Task.choices, initial=Project.Task.SINGLE_LABEL)


class ProjectSettingsForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    queue_strategy = forms.ChoiceField(choices=Project.QueueStrategy.choices, label="Order of the labeling queue")
    capture = forms.ChoiceField(choices=Project.Capture.choices, label="Keep invoked images as samples")
    capture_threshold = forms.FloatField(min_value=0.01, max_value=0.99, label="Uncertain below confidence")


class ProjectDeleteForm(forms.Form):
    confirmation = forms.CharField(label="Type the project's name to confirm")


class MemberAddForm(forms.Form):
    user = forms.CharField(label="Username or email")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.LABELER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class InviteForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.LABELER)


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=False)

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")
